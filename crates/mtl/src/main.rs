//! `mtl`: sentence embeddings and multi-task text classification on Burn.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: mtl_alloc::MiMalloc = mtl_alloc::MiMalloc;

/// Sentence embeddings and multi-task text classification with BERT-family models on Burn.
#[derive(Parser)]
#[command(name = "mtl", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Embed(mtl::embed::EmbedArgs),
    Similarity(mtl::similarity::SimilarityArgs),
    Train(Box<mtl::train::TrainArgs>),
    Eval(mtl::eval::EvalArgs),
    Predict(mtl::predict::PredictArgs),
    Serve(Box<mtl::serve::ServeArgs>),
    Export(mtl::export::ExportArgs),
}

/// Runs the command; an error prints as `error: what failed: why` (its whole chain of
/// causes on one line) and exits with status 1.
fn main() -> ExitCode {
    mtl_alloc::keep_freed_memory();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    if !matches!(cli.command, Command::Serve(_)) {
        mtl::progress::show_library_lines();
    }
    match cli.command {
        Command::Embed(args) => mtl::embed::run(&args),
        Command::Similarity(args) => mtl::similarity::run(&args),
        Command::Train(args) => mtl::train::run(&args).map(drop),
        Command::Eval(args) => mtl::eval::run(&args).map(drop),
        Command::Predict(args) => mtl::predict::run(&args),
        Command::Serve(args) => mtl::serve::run(&args),
        Command::Export(args) => mtl::export::run(&args),
    }
}
