//! The JSON bodies of text-embeddings-inference's (TEI's) routes, field by field as TEI
//! documents them: `/embed`, `/similarity`, `/predict`, `/tokenize`, `/decode`.
//!
//! Every request refuses a field it does not know (422, naming it), and each also takes the
//! `parameters` object that `huggingface_hub`'s `InferenceClient` sends (TEI ignores it; here
//! its fields are honoured, and a field given both there and at the top level is a 422).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::Input;

/// Which end of a too-long input is cut: TEI's `truncation_direction`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
pub(crate) enum TruncationDirection {
    /// Keep the end of the text (cut its beginning).
    #[serde(alias = "left")]
    Left,
    /// Keep the beginning of the text (cut its end). The default.
    #[default]
    #[serde(alias = "right")]
    Right,
}

/// The options of `/embed` that `InferenceClient.feature_extraction` sends in `parameters`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EmbedParameters {
    /// As the request's `truncate`.
    pub truncate: Option<bool>,
    /// As the request's `truncation_direction`.
    pub truncation_direction: Option<TruncationDirection>,
    /// As the request's `prompt_name`.
    pub prompt_name: Option<String>,
    /// As the request's `normalize`.
    pub normalize: Option<bool>,
    /// As the request's `dimensions`.
    pub dimensions: Option<usize>,
}

/// `POST /embed` (and `POST /` on an embedding model).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EmbedRequest {
    /// The text or texts to embed.
    pub inputs: Input,
    /// Truncate inputs longer than the model's maximum; with `false` they are an error (422).
    /// Default: true.
    pub truncate: Option<bool>,
    /// Which end of a too-long input is cut. Default: `Right`.
    pub truncation_direction: Option<TruncationDirection>,
    /// A key of the model's `prompts` (sentence-transformers' `config_sentence_transformers.json`):
    /// that prompt is put before every input. A model without prompts refuses it (422).
    pub prompt_name: Option<String>,
    /// L2-normalise the embeddings (after `dimensions`). Default: true.
    pub normalize: Option<bool>,
    /// Keep only the first this many values of each embedding (Matryoshka), 1 to the model's
    /// dimension. Default: all.
    pub dimensions: Option<usize>,
    /// The same options, as `huggingface_hub`'s `InferenceClient` sends them.
    pub parameters: Option<EmbedParameters>,
}

/// The options of `/similarity`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SimilarityParameters {
    /// As `/embed`'s `truncate`.
    pub truncate: Option<bool>,
    /// As `/embed`'s `truncation_direction`.
    pub truncation_direction: Option<TruncationDirection>,
    /// As `/embed`'s `prompt_name`.
    pub prompt_name: Option<String>,
}

/// A sentence and those to compare it with.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SimilarityInput {
    /// The sentence the others are compared with.
    pub source_sentence: String,
    /// The sentences compared with it (at least one).
    pub sentences: Vec<String>,
}

/// What `/similarity` compares: TEI's object, or (this server's older form) a list of texts.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum SimilarityInputs {
    /// TEI's shape: one score per sentence.
    Source(SimilarityInput),
    /// A list of texts: the cosine matrix of every pair.
    Matrix(Vec<String>),
}

/// `POST /similarity`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SimilarityRequest {
    /// `{"source_sentence": s, "sentences": [...]}` (TEI), or a list of texts.
    pub inputs: SimilarityInputs,
    /// Options.
    pub parameters: Option<SimilarityParameters>,
}

/// The answer of `/similarity`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum SimilarityResponse {
    /// The cosine similarity of `source_sentence` with each sentence, in order.
    Scores(Vec<f32>),
    /// For a list of texts: the cosine matrix, rows and columns in input order.
    Matrix(Vec<Vec<f32>>),
}

/// One input of `/predict`: a text, or a pair of texts (`[CLS] a [SEP] b [SEP]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Sequence {
    /// One text.
    Single(String),
    /// A pair of texts.
    Pair(String, String),
}

impl Sequence {
    /// The texts (one or two).
    pub(crate) fn texts(&self) -> Vec<&str> {
        match self {
            Self::Single(a) => vec![a],
            Self::Pair(a, b) => vec![a, b],
        }
    }
}

/// `/predict`'s `inputs`, as TEI reads them: a string, a pair `["a", "b"]`, or a batch of
/// `["a"]` and `["a", "b"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PredictInput {
    /// A string or a pair: answered with one list of labels.
    One(Sequence),
    /// A batch: answered with one list of labels per input.
    Batch(Vec<Sequence>),
}

impl PredictInput {
    /// Reads TEI's forms from a JSON value; the error says which form was expected.
    fn from_value(value: serde_json::Value) -> Result<Self, String> {
        use serde_json::Value;
        const EXPECTED: &str = "`inputs` must be a string, a pair of strings [\"a\", \"b\"], \
                                or a batch of [\"a\"] and [\"a\", \"b\"]";
        let string = |v: &Value| v.as_str().map(str::to_owned);
        let sequence = |items: &[Value]| -> Option<Sequence> {
            match items {
                [a] => Some(Sequence::Single(string(a)?)),
                [a, b] => Some(Sequence::Pair(string(a)?, string(b)?)),
                _ => None,
            }
        };
        match value {
            Value::String(text) => Ok(Self::One(Sequence::Single(text))),
            Value::Array(items) if items.first().is_some_and(Value::is_string) => {
                sequence(&items).map(Self::One).ok_or_else(|| {
                    format!(
                        "{EXPECTED}: a list of {} strings is neither (several texts are a \
                         batch: [[\"a\"], [\"b\"], ...])",
                        items.len()
                    )
                })
            }
            Value::Array(items) => items
                .iter()
                .map(|item| item.as_array().and_then(|pair| sequence(pair)))
                .collect::<Option<Vec<_>>>()
                .map(Self::Batch)
                .ok_or_else(|| EXPECTED.to_owned()),
            _ => Err(EXPECTED.to_owned()),
        }
    }

    /// The inputs, in order.
    pub(crate) fn into_sequences(self) -> Vec<Sequence> {
        match self {
            Self::One(sequence) => vec![sequence],
            Self::Batch(sequences) => sequences,
        }
    }
}

impl<'de> Deserialize<'de> for PredictInput {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        Self::from_value(value).map_err(serde::de::Error::custom)
    }
}

/// The options `InferenceClient.text_classification` sends in `parameters`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClassificationParameters {
    /// `softmax` (the only one served: the heads are trained with it). Other values: 422.
    pub function_to_apply: Option<String>,
    /// Keep only the this many most probable labels.
    pub top_k: Option<usize>,
}

/// `POST /predict` (and `POST /` on a model trained by `mtl train`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PredictRequest {
    /// A string, a pair `["a", "b"]`, or a batch `[["a"], ["a", "b"], ...]`.
    #[schema(value_type = Object)]
    pub inputs: PredictInput,
    /// Truncate inputs longer than the model's maximum; with `false` they are an error (422).
    /// Default: true.
    pub truncate: Option<bool>,
    /// Only `Right` (the classifier keeps the beginning of each text); `Left` is a 422.
    pub truncation_direction: Option<TruncationDirection>,
    /// Logits instead of probabilities: not served (the heads return probabilities), so
    /// `true` is a 422. Default: false.
    #[serde(default)]
    pub raw_scores: bool,
    /// One task, answered in TEI's shape (`[{label, score}]`). Not with `tasks`.
    pub task: Option<String>,
    /// Only these tasks, in this order, answered in the richer per-task shape
    /// ([`crate::api::TaskPrediction`]). Without `task` or `tasks`, a one-task model answers
    /// TEI's shape, a model with several tasks the richer shape for every task.
    pub tasks: Option<Vec<String>>,
    /// `InferenceClient`'s options.
    pub parameters: Option<ClassificationParameters>,
}

/// A label and its score, as TEI answers `/predict`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub(crate) struct LabelScore {
    /// The label.
    pub label: String,
    /// Its probability.
    pub score: f32,
}

/// `POST /tokenize`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenizeRequest {
    /// The text or texts.
    pub inputs: Input,
    /// Add `[CLS]` and `[SEP]`. Default: true.
    #[serde(default = "crate::api::yes")]
    pub add_special_tokens: bool,
    /// As `/embed`'s `prompt_name`: the prompt is tokenized with the text.
    pub prompt_name: Option<String>,
}

/// One token of `/tokenize`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub(crate) struct SimpleToken {
    /// Its id.
    pub id: u32,
    /// Its text: the input's bytes `start..stop`, or the special token itself.
    pub text: String,
    /// Whether it is a special token (`[CLS]`, `[SEP]`).
    pub special: bool,
    /// Its first byte in the input (none for a special token).
    pub start: Option<usize>,
    /// Its end byte in the input (none for a special token).
    pub stop: Option<usize>,
}

/// Token ids: one sequence or several.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum InputIds {
    /// One sequence.
    One(Vec<u32>),
    /// Several.
    Many(Vec<Vec<u32>>),
}

/// `POST /decode`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DecodeRequest {
    /// The ids to decode.
    pub ids: InputIds,
    /// Leave out special tokens. Default: true.
    #[serde(default = "crate::api::yes")]
    pub skip_special_tokens: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: serde_json::Value) -> Result<PredictInput, String> {
        serde_json::from_value::<PredictInput>(value).map_err(|e| e.to_string())
    }

    #[test]
    fn predict_inputs_read_as_tei_reads_them() {
        let one = |s: &str| Sequence::Single(s.into());
        let pair = |a: &str, b: &str| Sequence::Pair(a.into(), b.into());
        assert_eq!(parse(json!("a")), Ok(PredictInput::One(one("a"))));
        assert_eq!(
            parse(json!(["a", "b"])),
            Ok(PredictInput::One(pair("a", "b")))
        );
        assert_eq!(parse(json!(["a"])), Ok(PredictInput::One(one("a"))));
        assert_eq!(
            parse(json!([["a"], ["a", "b"]])),
            Ok(PredictInput::Batch(vec![one("a"), pair("a", "b")]))
        );
        assert!(
            parse(json!(["a", "b", "c"]))
                .unwrap_err()
                .contains("a batch")
        );
        assert!(parse(json!([["a", "b", "c"]])).is_err());
        assert!(parse(json!([["a"], "b"])).is_err());
        assert!(parse(json!(3)).is_err());
        // Empty: parsed, then refused by the route as TEI's `Empty` (400).
        assert_eq!(parse(json!([])), Ok(PredictInput::Batch(Vec::new())));
    }

    #[test]
    fn unknown_fields_are_refused_by_name() {
        let error = serde_json::from_value::<EmbedRequest>(json!({"inputs": "a", "colour": 1}))
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown field `colour`"), "{error}");
        let error = serde_json::from_value::<EmbedRequest>(
            json!({"inputs": "a", "parameters": {"top_k": 1}}),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("unknown field `top_k`"), "{error}");
        let request: EmbedRequest = serde_json::from_value(
            json!({"inputs": "a", "truncation_direction": "left", "parameters": {}}),
        )
        .unwrap();
        assert_eq!(
            request.truncation_direction,
            Some(TruncationDirection::Left)
        );
        assert!(
            serde_json::from_value::<EmbedRequest>(
                json!({"inputs": "a", "truncation_direction": "Left"})
            )
            .is_ok()
        );
    }
}
