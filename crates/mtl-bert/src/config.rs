//! The Hugging Face BERT configuration (`config.json`).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The feed-forward activation (`hidden_act` in `config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HiddenAct {
    /// GELU in its exact erf form (`"gelu"`), as in the original BERT and MiniLM.
    #[serde(rename = "gelu")]
    Gelu,
    /// GELU's tanh approximation (`"gelu_new"`, also `"gelu_pytorch_tanh"`).
    #[serde(rename = "gelu_new", alias = "gelu_pytorch_tanh")]
    GeluTanh,
    /// ReLU (`"relu"`).
    #[serde(rename = "relu")]
    Relu,
}

impl HiddenAct {
    const SUPPORTED: &'static str = "gelu, gelu_new, gelu_pytorch_tanh, relu";

    fn parse(name: &str) -> Option<Self> {
        match name {
            "gelu" => Some(Self::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" => Some(Self::GeluTanh),
            "relu" => Some(Self::Relu),
            _ => None,
        }
    }
}

/// A BERT model's configuration, read from a Hugging Face `config.json`.
///
/// Fields mirror `transformers.BertConfig`; a missing field takes the `transformers` default
/// (noted on each field). Keys this crate does not use are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    /// Number of token ids. Default: 30522.
    #[serde(default = "defaults::vocab_size")]
    pub vocab_size: usize,
    /// Width of every hidden state. Default: 768.
    #[serde(default = "defaults::hidden_size")]
    pub hidden_size: usize,
    /// Number of transformer layers. Default: 12.
    #[serde(default = "defaults::num_hidden_layers")]
    pub num_hidden_layers: usize,
    /// Number of attention heads; must divide `hidden_size`. Default: 12.
    #[serde(default = "defaults::num_attention_heads")]
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer. Default: 3072.
    #[serde(default = "defaults::intermediate_size")]
    pub intermediate_size: usize,
    /// Feed-forward activation. Default: exact GELU.
    #[serde(default = "defaults::hidden_act")]
    pub hidden_act: HiddenAct,
    /// Dropout on embeddings and sub-layer outputs, in training only. Default: 0.1.
    #[serde(default = "defaults::dropout")]
    pub hidden_dropout_prob: f64,
    /// Dropout on attention probabilities, in training only. Default: 0.1.
    #[serde(default = "defaults::dropout")]
    pub attention_probs_dropout_prob: f64,
    /// Number of positions, i.e. the longest input in tokens. Default: 512.
    #[serde(default = "defaults::max_position_embeddings")]
    pub max_position_embeddings: usize,
    /// Number of token types (segments). Default: 2.
    #[serde(default = "defaults::type_vocab_size")]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon. Default: 1e-12.
    #[serde(default = "defaults::layer_norm_eps")]
    pub layer_norm_eps: f64,
    /// Id of the padding token. Default: 0.
    #[serde(default)]
    pub pad_token_id: usize,
    /// Always `"bert"`; kept so a saved configuration loads in `transformers`.
    #[serde(default = "defaults::model_type")]
    pub model_type: String,
}

mod defaults {
    use super::HiddenAct;
    pub(super) fn vocab_size() -> usize {
        30522
    }
    pub(super) fn hidden_size() -> usize {
        768
    }
    pub(super) fn num_hidden_layers() -> usize {
        12
    }
    pub(super) fn num_attention_heads() -> usize {
        12
    }
    pub(super) fn intermediate_size() -> usize {
        3072
    }
    pub(super) fn hidden_act() -> HiddenAct {
        HiddenAct::Gelu
    }
    pub(super) fn dropout() -> f64 {
        0.1
    }
    pub(super) fn max_position_embeddings() -> usize {
        512
    }
    pub(super) fn type_vocab_size() -> usize {
        2
    }
    pub(super) fn layer_norm_eps() -> f64 {
        1e-12
    }
    pub(super) fn model_type() -> String {
        "bert".into()
    }
}

impl BertConfig {
    /// Reads and checks a `config.json`.
    ///
    /// Fails with [`Error::UnsupportedConfig`] for another `model_type`, activation or position
    /// embedding type, and with [`Error::InvalidConfig`] for inconsistent sizes.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json(&text, path)
    }

    /// Parses and checks the text of a `config.json`; `path` is used in error messages.
    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        let json_error = |source| Error::Json {
            path: path.to_path_buf(),
            source,
        };
        let raw: serde_json::Value = serde_json::from_str(text).map_err(json_error)?;
        let unsupported = |field, value: &serde_json::Value, supported| Error::UnsupportedConfig {
            path: path.to_path_buf(),
            field,
            value: value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_owned),
            supported,
        };
        if let Some(value) = raw.get("model_type")
            && value.as_str() != Some("bert")
        {
            return Err(unsupported("model_type", value, "bert"));
        }
        if let Some(value) = raw.get("hidden_act")
            && value.as_str().and_then(HiddenAct::parse).is_none()
        {
            return Err(unsupported("hidden_act", value, HiddenAct::SUPPORTED));
        }
        if let Some(value) = raw.get("position_embedding_type")
            && value.as_str() != Some("absolute")
        {
            return Err(unsupported("position_embedding_type", value, "absolute"));
        }
        for flag in ["is_decoder", "add_cross_attention"] {
            if let Some(value) = raw.get(flag)
                && value.as_bool() == Some(true)
            {
                return Err(unsupported(flag, value, "false (encoder only)"));
            }
        }
        let config: Self = serde_json::from_value(raw).map_err(json_error)?;
        config.validate(path)?;
        Ok(config)
    }

    /// Checks that the sizes are consistent.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let invalid = |message: String| {
            Err(Error::InvalidConfig {
                path: path.to_path_buf(),
                message,
            })
        };
        let sizes = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ];
        if let Some((name, _)) = sizes.iter().find(|(_, value)| *value == 0) {
            return invalid(format!("{name} must be positive"));
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return invalid(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        for (name, p) in [
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            (
                "attention_probs_dropout_prob",
                self.attention_probs_dropout_prob,
            ),
        ] {
            if !(0.0..1.0).contains(&p) {
                return invalid(format!("{name} {p} is not in [0, 1)"));
            }
        }
        if self.layer_norm_eps.is_nan() || self.layer_norm_eps <= 0.0 {
            return invalid(format!(
                "layer_norm_eps {} must be positive",
                self.layer_norm_eps
            ));
        }
        if self.pad_token_id >= self.vocab_size {
            return invalid(format!(
                "pad_token_id {} is outside the vocabulary of {}",
                self.pad_token_id, self.vocab_size
            ));
        }
        Ok(())
    }

    /// Width of one attention head.
    pub fn head_size(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Writes the configuration as a Hugging Face `config.json` (loadable by `transformers`).
    pub fn to_json(&self) -> String {
        let mut value = serde_json::to_value(self).expect("a BertConfig serialises");
        let object = value
            .as_object_mut()
            .expect("a struct serialises to an object");
        object.insert("architectures".into(), serde_json::json!(["BertModel"]));
        object.insert("position_embedding_type".into(), "absolute".into());
        serde_json::to_string_pretty(&value).expect("a JSON value serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<BertConfig> {
        BertConfig::from_json(json, Path::new("config.json"))
    }

    #[test]
    fn defaults_follow_transformers() {
        let config = parse(r#"{"model_type": "bert"}"#).unwrap();
        assert_eq!(config.hidden_size, 768);
        assert_eq!(config.num_hidden_layers, 12);
        assert_eq!(config.hidden_act, HiddenAct::Gelu);
        assert_eq!(config.layer_norm_eps, 1e-12);
        assert_eq!(config.head_size(), 64);
    }

    #[test]
    fn activations_parse() {
        for (name, act) in [
            ("gelu", HiddenAct::Gelu),
            ("gelu_new", HiddenAct::GeluTanh),
            ("gelu_pytorch_tanh", HiddenAct::GeluTanh),
            ("relu", HiddenAct::Relu),
        ] {
            let config = parse(&format!(r#"{{"hidden_act": "{name}"}}"#)).unwrap();
            assert_eq!(config.hidden_act, act);
        }
    }

    #[test]
    fn unsupported_values_are_named() {
        let err = parse(r#"{"model_type": "roberta"}"#)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "config.json: unsupported model_type \"roberta\" (supported: bert)"
        );
        let err = parse(r#"{"hidden_act": "swish"}"#).unwrap_err().to_string();
        assert!(err.contains("unsupported hidden_act \"swish\""), "{err}");
        let err = parse(r#"{"position_embedding_type": "relative_key"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("position_embedding_type"), "{err}");
    }

    #[test]
    fn inconsistent_sizes_are_rejected() {
        let err = parse(r#"{"hidden_size": 100, "num_attention_heads": 12}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not a multiple of num_attention_heads"),
            "{err}"
        );
        let err = parse(r#"{"num_hidden_layers": 0}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("num_hidden_layers must be positive"), "{err}");
    }

    #[test]
    fn malformed_json_reports_position() {
        let err = parse("{\"hidden_size\": }").unwrap_err().to_string();
        assert!(err.starts_with("config.json: "), "{err}");
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn round_trips_through_json() {
        let config = parse(r#"{"hidden_size": 32, "num_attention_heads": 4}"#).unwrap();
        let again = parse(&config.to_json()).unwrap();
        assert_eq!(config, again);
    }
}
