//! Errors of training and evaluation.

/// What can go wrong in a training run or an evaluation. Errors from the crates below keep
/// their own type ([`Error::Data`], [`Error::Model`], ...); [`Error::Context`] says what was
/// being done when one happened (shown as the error, its cause as the source).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is invalid; the message names it.
    #[error("{0}")]
    Config(String),
    /// The run directory cannot be used as asked (not a run, another run, the working
    /// directory, locked by another process).
    #[error("{0}")]
    RunDir(String),
    /// A checkpoint or run log is damaged or missing a part.
    #[error("{0}")]
    Checkpoint(String),
    /// Training produced a NaN or infinite loss or parameter.
    #[error("{0}")]
    NotFinite(String),
    /// The observer asked the run to stop ([`Observer::should_stop`](crate::Observer)); the
    /// run's checkpoint is written, and resuming the run continues from `step`.
    #[error(
        "training interrupted after step {step}; the run in {} is checkpointed there and resumes from it",
        run_dir.display()
    )]
    Interrupted {
        /// Optimiser steps done.
        step: usize,
        /// The run directory.
        run_dir: std::path::PathBuf,
    },
    /// A tensor could not be read back or stored (Burn's own error, in words).
    #[error("{0}")]
    Tensor(String),
    /// A file operation failed.
    #[error("{what}")]
    Io {
        /// What was being done, naming the file.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The model could not be resolved or downloaded.
    #[error(transparent)]
    Hub(#[from] mtl_hub::Error),
    /// A data set could not be fetched.
    #[error(transparent)]
    Assets(#[from] mtl_assets::Error),
    /// Task data could not be read, tokenized or planned.
    #[error(transparent)]
    Data(#[from] mtl_data::Error),
    /// The multi-task model could not be built, loaded or saved.
    #[error(transparent)]
    Model(#[from] mtl_model::Error),
    /// The encoder could not be loaded or saved.
    #[error(transparent)]
    Encoder(#[from] mtl_bert::Error),
    /// `what` failed because of `source`.
    #[error("{what}")]
    Context {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: Box<Error>,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Says what was being done when an error happened (as `anyhow::Context` does, typed).
pub(crate) trait Context<T> {
    /// Wraps an error with `what()`.
    fn with_context(self, what: impl FnOnce() -> String) -> Result<T>;

    /// Wraps an error with `what`.
    fn context(self, what: &str) -> Result<T>
    where
        Self: Sized,
    {
        self.with_context(|| what.to_owned())
    }
}

impl<T> Context<T> for std::io::Result<T> {
    fn with_context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io {
            what: what(),
            source,
        })
    }
}

/// [`Context`] for the errors that convert into [`Error`].
macro_rules! context_for {
    ($($error:ty),*) => {$(
        impl<T> Context<T> for std::result::Result<T, $error> {
            fn with_context(self, what: impl FnOnce() -> String) -> Result<T> {
                self.map_err(|source| Error::Context {
                    what: what(),
                    source: Box::new(source.into()),
                })
            }
        }
    )*};
}

context_for!(
    Error,
    mtl_hub::Error,
    mtl_assets::Error,
    mtl_data::Error,
    mtl_model::Error,
    mtl_bert::Error
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_is_the_message_and_the_cause_its_source() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let error = Err::<(), _>(io).context("reading x").unwrap_err();
        assert_eq!(error.to_string(), "reading x");
        assert_eq!(
            std::error::Error::source(&error).unwrap().to_string(),
            "gone"
        );
        let error = Err::<(), _>(Error::Config("bad".into()))
            .with_context(|| "task t".into())
            .unwrap_err();
        assert_eq!(error.to_string(), "task t");
        assert_eq!(
            std::error::Error::source(&error).unwrap().to_string(),
            "bad"
        );
    }
}
