//! `--model` and `--revision`: read and resolved by `mtl_hub`, its errors given the flags as
//! context and its events drawn on standard error ([`crate::progress::hub_progress`]).

use std::path::PathBuf;

use anyhow::{Context, Result};
use mtl_hub::{HubOptions, ModelSource};

/// Reads `--model` and `--revision`.
pub fn parse(model: Option<&str>, revision: Option<&str>) -> Result<ModelSource> {
    ModelSource::parse(model, revision).with_context(|| {
        let flags = match (model, revision) {
            (Some(model), Some(revision)) => format!("--model {model} --revision {revision}"),
            (Some(model), None) => format!("--model {model}"),
            (None, Some(revision)) => format!("--revision {revision} without --model"),
            (None, None) => "no --model".to_owned(),
        };
        format!("invalid {flags}")
    })
}

/// The model's local directory, downloading or fetching it first if needed (the hub's options
/// from the environment), with its progress on standard error.
pub fn resolve(source: &ModelSource) -> Result<PathBuf> {
    source
        .resolve_with(
            &HubOptions::from_env(),
            &mut crate::progress::hub_progress(),
        )
        .with_context(|| match source {
            ModelSource::Default => "no --model".to_owned(),
            ModelSource::Local(dir) => format!("--model {}", dir.display()),
            ModelSource::Hub { id, revision } => format!("--model {id} --revision {revision}"),
        })
}
