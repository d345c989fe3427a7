//! The JSON bodies of OpenAI's embeddings and models API, of this server's richer
//! multi-task `/predict` answer and of `/info` (TEI's routes: [`crate::tei_api`]).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One text or several.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum Input {
    /// One text.
    One(String),
    /// Several texts.
    Many(Vec<String>),
}

impl Input {
    /// The texts, in order.
    pub(crate) fn into_texts(self) -> Vec<String> {
        match self {
            Self::One(text) => vec![text],
            Self::Many(texts) => texts,
        }
    }
}

/// How `/v1/embeddings` writes each embedding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum EncodingFormat {
    /// A JSON array of numbers.
    #[default]
    Float,
    /// The little-endian f32 bytes in standard base64 (what the `openai` Python client asks
    /// for by default).
    Base64,
}

/// `POST /v1/embeddings` (OpenAI). Unknown fields are refused (422).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EmbeddingsRequest {
    /// The text or texts to embed.
    pub input: Input,
    /// The model name; any name is accepted (this server serves one model).
    #[serde(default)]
    #[allow(dead_code, reason = "accepted as OpenAI's API has it, never read")]
    pub model: Option<String>,
    /// `float` (default) or `base64`.
    #[serde(default)]
    pub encoding_format: EncodingFormat,
    /// Keep only the first this many dimensions (then re-normalised to unit length).
    #[serde(default)]
    pub dimensions: Option<usize>,
    /// An end-user id (accepted and ignored).
    #[serde(default)]
    #[allow(dead_code, reason = "accepted as OpenAI's API has it, never read")]
    pub user: Option<String>,
}

/// One embedding of [`EmbeddingsResponse`].
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct EmbeddingData {
    /// Always `embedding`.
    pub object: String,
    /// The input's position.
    pub index: usize,
    /// The numbers, or their base64 bytes.
    pub embedding: EmbeddingValue,
}

/// An embedding as floats or base64.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum EmbeddingValue {
    /// `encoding_format: float`.
    Float(Vec<f32>),
    /// `encoding_format: base64`.
    Base64(String),
}

/// Tokens read, as OpenAI counts them.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct Usage {
    /// Tokens of every input (special tokens included, after truncation).
    pub prompt_tokens: usize,
    /// The same.
    pub total_tokens: usize,
}

/// The answer of `POST /v1/embeddings`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct EmbeddingsResponse {
    /// Always `list`.
    pub object: String,
    /// One embedding per input, in order.
    pub data: Vec<EmbeddingData>,
    /// The served model's name.
    pub model: String,
    /// Tokens read.
    pub usage: Usage,
}

/// `true`: a serde default.
pub(crate) fn yes() -> bool {
    true
}

/// A label's probability.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct LabelProbability {
    /// The label.
    pub label: String,
    /// Its probability (softmax of the head's logits).
    pub probability: f32,
}

/// One task's prediction for one input.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct TaskPrediction {
    /// The task.
    pub task: String,
    /// The most probable label.
    pub label: String,
    /// Its probability.
    pub probability: f32,
    /// Every label's probability, in the head's label order.
    pub probabilities: Vec<LabelProbability>,
}

/// A task of the served model.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct TaskInfo {
    /// The task's name.
    pub name: String,
    /// Its labels, in the head's order.
    pub labels: Vec<String>,
}

/// `GET /info`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct Info {
    /// The served model's name.
    pub model: String,
    /// The embedding width.
    pub dim: usize,
    /// The pooling of the embeddings (`mean`, `cls`, `max` or `pooler`).
    pub pooling: String,
    /// Whether `/v1/embeddings` L2-normalises (the model's default).
    pub normalize: bool,
    /// The longest input in tokens; longer ones are truncated.
    pub max_input_tokens: usize,
    /// The tasks of a multi-task model (empty for an embedding model).
    pub tasks: Vec<TaskInfo>,
    /// The compute backend and device.
    pub backend: String,
    /// The encoder's precision: `fp32`, or `int8 (KERNEL)` naming the integer GEMM kernel.
    pub precision: String,
    /// Padded tokens per model batch at most.
    pub max_batch_tokens: usize,
    /// Requests in flight at most; more are answered 429.
    pub max_concurrent_requests: usize,
    /// Inputs per request at most.
    pub max_inputs: usize,
    /// Characters per input at most.
    pub max_input_chars: usize,
    /// Bytes per request body at most.
    pub max_body_bytes: usize,
    /// This server's version.
    pub version: String,
}

/// One model of `GET /v1/models`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ModelCard {
    /// The served model's name (what `/v1/embeddings` reports).
    pub id: String,
    /// Always `model`.
    pub object: String,
    /// When the server started, in Unix seconds.
    pub created: u64,
    /// Always `mtl`.
    pub owned_by: String,
}

/// `GET /v1/models`: the one served model.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ModelList {
    /// Always `list`.
    pub object: String,
    /// The served model.
    pub data: Vec<ModelCard>,
}

/// `GET /health` when ready.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct Health {
    /// `ok`.
    pub status: String,
}
