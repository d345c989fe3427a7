//! Runs the Python package's tests (`tests/python/`, pytest) on the extension module this
//! build compiled: the cdylib of this crate, copied with `python/mtl/` into a temporary
//! package directory, in the reference environment (`$MTL_TORCH_VENV`: numpy, pytest,
//! sentence-transformers, Ray). `cargo xtask test` builds the cdylib in the workspace's one
//! test build and sets the environment; a missing environment fails the test, saying how to
//! create it.
//!
//! `test_predict.py` compares with the `mtl` binary of the same build (target/debug/mtl),
//! which `cargo test --workspace` builds for the `mtl` crate's own tests.

#[path = "../../../tests/support/reference_venv.rs"]
mod reference_venv;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The build's output directory (`target/debug`) and its compiled extension module.
fn built_module() -> (PathBuf, PathBuf) {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    let profile = deps.parent().unwrap().to_path_buf();
    let name = format!(
        "{}mtl_py{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    let module = [deps.join(&name), profile.join(&name)]
        .into_iter()
        .filter(|p| p.is_file())
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not in {} or {}: build the crate (`cargo test -p mtl-py` builds it)",
                deps.display(),
                profile.display()
            )
        });
    (profile, module)
}

/// The package `mtl` as Python imports it: `python/mtl/*` with the module as `_mtl.abi3.so`.
fn package(module: &Path) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let package = root.path().join("mtl");
    std::fs::create_dir(&package).unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/mtl");
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, package.join(path.file_name().unwrap())).unwrap();
        }
    }
    std::fs::copy(module, package.join("_mtl.abi3.so")).unwrap();
    root
}

#[test]
fn pytest() {
    let python = reference_venv::python("numpy, pytest, sentence_transformers, ray");
    let (profile, module) = built_module();
    let package = package(&module);
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mtl = profile.join(format!("mtl{}", std::env::consts::EXE_SUFFIX));
    let status = Command::new(python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"])
        .arg(manifest.join("tests/python"))
        .env("PYTHONPATH", package.path())
        .env("MTL_BINARY", &mtl)
        .env("MTL_WORKSPACE", manifest.join("../.."))
        // The tests start a local Ray cluster; no usage reporting, no dashboard.
        .env("RAY_USAGE_STATS_ENABLED", "0")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        // With wgpu and tch compiled in (CI's test build), the module's initial-exec
        // thread-locals (mimalloc's among them, about 2 KB) outgrow the 512 bytes glibc keeps
        // for modules loaded later, and `import mtl` fails with "cannot allocate memory in
        // static TLS block"; a larger reserve (a glibc tunable, this process only) fixes it.
        // The default build (flex) loads without it.
        .env("GLIBC_TUNABLES", tunables())
        .status()
        .unwrap();
    assert!(status.success(), "pytest failed (its report is above)");
}

/// `GLIBC_TUNABLES` of the environment with a 64 KiB optional static TLS reserve added.
fn tunables() -> String {
    let reserve = "glibc.rtld.optional_static_tls=65536";
    match std::env::var("GLIBC_TUNABLES") {
        Ok(existing) if !existing.is_empty() => format!("{existing}:{reserve}"),
        _ => reserve.to_owned(),
    }
}
