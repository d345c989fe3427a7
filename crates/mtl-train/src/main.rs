//! `mtl`: sentence embeddings and multi-task text classification on Burn.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Sentence embeddings and multi-task text classification with BERT-family models on Burn.
#[derive(Parser)]
#[command(name = "mtl", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Embed(mtl_train::embed::EmbedArgs),
    Similarity(mtl_train::similarity::SimilarityArgs),
    Train(Box<mtl_train::train::args::TrainArgs>),
    Eval(mtl_train::eval::EvalArgs),
    Predict(mtl_train::predict::PredictArgs),
}

/// Runs the command; an error prints as `error: what failed: why` (its whole chain of
/// causes on one line) and exits with status 1.
fn main() -> ExitCode {
    mtl_train::keep_freed_memory();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Embed(args) => mtl_train::embed::run(&args),
        Command::Similarity(args) => mtl_train::similarity::run(&args),
        Command::Train(args) => mtl_train::train::args::run(&args).map(drop),
        Command::Eval(args) => mtl_train::eval::run(&args).map(drop),
        Command::Predict(args) => mtl_train::predict::run(&args),
    }
}
