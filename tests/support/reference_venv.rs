//! The PyTorch reference environment (`scripts/requirements.txt`: torch, transformers, the
//! `openai` client, ...): the virtual environment `$MTL_TORCH_VENV` names, else the
//! workspace's `.cache/torch-venv`. `cargo xtask test` creates it (`scripts/ensure_venv.py`)
//! and passes it in `MTL_TORCH_VENV`. Included by tests with `#[path]`; a test that needs it
//! fails, saying how to create it, rather than passing unchecked.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The environment's interpreter, checked to import `modules` (e.g. `"torch, transformers"`).
///
/// # Panics
/// When the environment is missing or lacks one of the modules, with how to create it.
pub fn python(modules: &str) -> PathBuf {
    let from_env = std::env::var_os("MTL_TORCH_VENV").filter(|v| !v.is_empty());
    let source = if from_env.is_some() {
        "$MTL_TORCH_VENV"
    } else {
        "the default"
    };
    let venv = from_env.map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/torch-venv"),
        PathBuf::from,
    );
    let python = venv.join("bin/python");
    let help = "create it with `python3 scripts/ensure_venv.py` (scripts/requirements.txt, a \
                few minutes the first time), or run the tests with `cargo xtask test`, which \
                does that and sets MTL_TORCH_VENV";
    assert!(
        python.is_file(),
        "no PyTorch reference environment: {} ({source}) does not exist; {help}",
        python.display()
    );
    let output = Command::new(&python)
        .args(["-c", &format!("import {modules}")])
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}; {help}", python.display()));
    assert!(
        output.status.success(),
        "{} ({source}) cannot import {modules}: {}; {help}",
        python.display(),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    eprintln!("reference environment: {} ({source})", venv.display());
    python
}

/// Runs `scripts/<script>` with the environment's interpreter (checked to import `modules`),
/// `stdin` on its standard input, and returns its standard output.
///
/// # Panics
/// When the environment is missing (as [`python`]) or the script fails, with its messages.
pub fn run_script(script: &str, modules: &str, stdin: &str) -> String {
    use std::io::Write;
    use std::process::Stdio;
    let python = python(modules);
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scripts")
        .join(script);
    let mut child = Command::new(&python)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e}", python.display()));
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(stdin.as_bytes())
        .unwrap_or_else(|e| panic!("writing to {}: {e}", script.display()));
    let output = child.wait_with_output().expect("the script ran");
    assert!(
        output.status.success(),
        "{} failed ({}): {}",
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("the script prints UTF-8")
}
