//! The prompts of a sentence-transformers model (`prompts` in
//! `config_sentence_transformers.json`): text put before an input, chosen by name with TEI's
//! `prompt_name`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::{ApiError, Error};

/// The file that holds them.
const FILE: &str = "config_sentence_transformers.json";

#[derive(Deserialize)]
struct SentenceTransformersConfig {
    #[serde(default)]
    prompts: BTreeMap<String, String>,
}

/// A model's prompts by name (none for most models).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Prompts(BTreeMap<String, String>);

impl Prompts {
    /// The prompts of the model in `dir`: none when it has no `config_sentence_transformers.json`
    /// or the file has no `prompts`; an error when the file is unreadable or not such JSON.
    pub(crate) fn load(dir: &Path) -> Result<Self, Error> {
        let path = dir.join(FILE);
        if !path.is_file() {
            return Ok(Self::default());
        }
        let failed = |source: Box<dyn std::error::Error + Send + Sync>| Error::Load {
            dir: dir.to_path_buf(),
            source,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| failed(Box::new(e)))?;
        let config: SentenceTransformersConfig =
            serde_json::from_str(&text).map_err(|e| failed(format!("{FILE}: {e}").into()))?;
        Ok(Self(config.prompts))
    }

    /// The prompt called `name`; a 422 naming the prompts there are (or saying there are none).
    pub(crate) fn get(&self, name: &str) -> Result<&str, ApiError> {
        if self.0.is_empty() {
            return Err(ApiError::invalid(format!(
                "prompt_name {name:?}: this model has no prompts (none in its {FILE})"
            ))
            .param("prompt_name"));
        }
        self.0.get(name).map(String::as_str).ok_or_else(|| {
            let names: Vec<&str> = self.0.keys().map(String::as_str).collect();
            ApiError::invalid(format!(
                "unknown prompt_name {name:?} (this model's prompts: {})",
                names.join(", ")
            ))
            .param("prompt_name")
        })
    }

    /// `texts` with the prompt called `name` before each (unchanged for `None`).
    pub(crate) fn apply(
        &self,
        name: Option<&str>,
        texts: Vec<String>,
    ) -> Result<Vec<String>, ApiError> {
        match name {
            None => Ok(texts),
            Some(name) => {
                let prompt = self.get(name)?;
                Ok(texts.into_iter().map(|t| format!("{prompt}{t}")).collect())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_are_read_and_put_before_each_text() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Prompts::load(dir.path()).unwrap(), Prompts::default());
        let none = Prompts::default();
        let error = none.apply(Some("query"), vec!["a".into()]).unwrap_err();
        assert!(
            error.message.contains("has no prompts"),
            "{}",
            error.message
        );
        std::fs::write(
            dir.path().join(FILE),
            r#"{"prompts": {"query": "query: ", "passage": "passage: "}}"#,
        )
        .unwrap();
        let prompts = Prompts::load(dir.path()).unwrap();
        assert_eq!(
            prompts
                .apply(Some("query"), vec!["a".into(), "b".into()])
                .unwrap(),
            ["query: a", "query: b"]
        );
        assert_eq!(prompts.apply(None, vec!["a".into()]).unwrap(), ["a"]);
        let error = prompts.apply(Some("doc"), vec!["a".into()]).unwrap_err();
        assert!(
            error
                .message
                .contains("this model's prompts: passage, query"),
            "{}",
            error.message
        );
        std::fs::write(dir.path().join(FILE), "{").unwrap();
        assert!(Prompts::load(dir.path()).is_err());
    }
}
