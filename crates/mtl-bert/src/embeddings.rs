//! BERT's input embeddings: word + position + token type, then LayerNorm and dropout.

use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig,
};
use burn::prelude::*;

use crate::config::BertConfig;
use crate::dropout::{DropoutKey, dropout};

/// Sums word, absolute position and token-type embeddings, as `BertEmbeddings` in
/// `transformers` does. Field names follow the checkpoint (`embeddings.word_embeddings`, ...).
#[derive(Module, Debug)]
pub struct BertEmbeddings {
    /// `[vocab_size, hidden]`.
    pub word_embeddings: Embedding,
    /// `[max_position_embeddings, hidden]`.
    pub position_embeddings: Embedding,
    /// `[type_vocab_size, hidden]`.
    pub token_type_embeddings: Embedding,
    /// `embeddings.LayerNorm` in the checkpoint.
    pub layer_norm: LayerNorm,
    /// `hidden_dropout_prob`, active in training only.
    pub dropout: Dropout,
}

impl BertEmbeddings {
    /// Builds embeddings for `config` on `device`, weights drawn from `init`.
    pub fn init(config: &BertConfig, init: &Initializer, device: &Device) -> Self {
        let embedding = |n| {
            EmbeddingConfig::new(n, config.hidden_size)
                .with_initializer(init.clone())
                .init(device)
        };
        Self {
            word_embeddings: embedding(config.vocab_size),
            position_embeddings: embedding(config.max_position_embeddings),
            token_type_embeddings: embedding(config.type_vocab_size),
            layer_norm: LayerNormConfig::new(config.hidden_size)
                .with_epsilon(config.layer_norm_eps)
                .init(device),
            dropout: DropoutConfig::new(config.hidden_dropout_prob).init(),
        }
    }

    /// `[batch, seq]` token ids and token-type ids -> `[batch, seq, hidden]`.
    ///
    /// Positions count from 0 at the first token of every row (right padding). In training,
    /// dropout's masks come from `key` (see [`DropoutKey`]).
    pub fn forward(
        &self,
        input_ids: Tensor<2, Int>,
        token_type_ids: Tensor<2, Int>,
        key: Option<DropoutKey>,
    ) -> Tensor<3> {
        let [_, seq_len] = input_ids.dims();
        let device = input_ids.device();
        let positions = Tensor::<1, Int>::arange(0..seq_len as i64, &device).unsqueeze::<2>();
        let embeddings = self.word_embeddings.forward(input_ids)
            + self.token_type_embeddings.forward(token_type_ids)
            + self.position_embeddings.forward(positions);
        dropout(&self.dropout, self.layer_norm.forward(embeddings), key)
    }
}
