//! TEMPORARY stand-in for the mtl-hub crate's API while it is built.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[error("{0:#}")]
pub struct Error(anyhow::Error);

pub struct ModelSource(crate::model_source::ModelSource);

impl ModelSource {
    pub fn parse(model: Option<&str>, revision: Option<&str>) -> Result<Self, Error> {
        crate::model_source::ModelSource::parse(model, revision)
            .map(Self)
            .map_err(Error)
    }

    pub fn resolve(&self) -> Result<PathBuf, Error> {
        self.0.resolve().map_err(Error)
    }
}
