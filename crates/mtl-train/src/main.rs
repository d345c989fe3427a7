//! `mtl`: sentence embeddings and multi-task text classification on Burn.

use anyhow::Result;
use clap::{Parser, Subcommand};

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
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Embed(args) => mtl_train::embed::run(&args),
        Command::Similarity(args) => mtl_train::similarity::run(&args),
    }
}
