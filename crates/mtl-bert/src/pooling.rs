//! Turning a last hidden state into one vector per text.
//!
//! The four strategies of sentence-transformers' `Pooling` module plus BERT's pooler, all
//! masking padding the way sentence-transformers does, and optional L2 normalisation as in its
//! `Normalize` module (`torch.nn.functional.normalize`, eps 1e-12).

use std::fmt;
use std::str::FromStr;

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::model::BertPooler;

/// How token vectors become a sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// The `[CLS]` token's last hidden state.
    Cls,
    /// BERT's pooler: dense + tanh on the `[CLS]` token (needs a checkpoint with a pooler).
    Pooler,
    /// The mean of the real tokens' vectors (padding excluded).
    Mean,
    /// The element-wise maximum over the real tokens' vectors (padding excluded).
    Max,
}

impl Pooling {
    /// Every strategy, in the order `--help` lists them.
    pub const ALL: [Pooling; 4] = [Pooling::Cls, Pooling::Pooler, Pooling::Mean, Pooling::Max];

    /// The strategy's name as written on the command line and in configs.
    pub fn name(self) -> &'static str {
        match self {
            Pooling::Cls => "cls",
            Pooling::Pooler => "pooler",
            Pooling::Mean => "mean",
            Pooling::Max => "max",
        }
    }
}

impl fmt::Display for Pooling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Pooling {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Pooling::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("unknown pooling {s:?} (expected cls, pooler, mean or max)"))
    }
}

/// `[batch, seq, hidden]` -> `[batch, hidden]`: the first token's vector.
pub(crate) fn cls(last_hidden_state: Tensor<3>) -> Tensor<2> {
    let [batch, _, width] = last_hidden_state.dims();
    last_hidden_state
        .slice(s![.., 0..1, ..])
        .reshape([batch, width])
}

/// `[batch, seq, hidden]` with a `[batch, seq]` 1/0 mask -> `[batch, hidden]` masked mean.
pub(crate) fn mean(last_hidden_state: Tensor<3>, attention_mask: Tensor<2>) -> Tensor<2> {
    let mask = attention_mask.unsqueeze_dim::<3>(2);
    let summed = (last_hidden_state * mask.clone())
        .sum_dim(1)
        .squeeze_dim::<2>(1);
    let counts = mask.sum_dim(1).squeeze_dim::<2>(1).clamp_min(1e-9);
    summed / counts
}

/// `[batch, seq, hidden]` with a `[batch, seq]` 1/0 mask -> `[batch, hidden]` masked maximum.
///
/// Padding positions are set to -1e9 before the maximum, as sentence-transformers does.
pub(crate) fn max(last_hidden_state: Tensor<3>, attention_mask: Tensor<2>) -> Tensor<2> {
    let padding = attention_mask.equal_elem(0.0).unsqueeze_dim::<3>(2);
    let [batch, seq_len, width] = last_hidden_state.dims();
    last_hidden_state
        .mask_fill(padding.expand([batch, seq_len, width]), -1e9)
        .max_dim(1)
        .squeeze_dim::<2>(1)
}

/// Applies `pooling`; `pooler` is the model's pooler, needed only for [`Pooling::Pooler`].
///
/// Returns `None` when `pooling` is [`Pooling::Pooler`] and the model has no pooler.
pub fn pool(
    pooling: Pooling,
    last_hidden_state: Tensor<3>,
    attention_mask: Tensor<2>,
    pooler: Option<&BertPooler>,
) -> Option<Tensor<2>> {
    Some(match pooling {
        Pooling::Cls => cls(last_hidden_state),
        Pooling::Pooler => pooler?.forward(last_hidden_state),
        Pooling::Mean => mean(last_hidden_state, attention_mask),
        Pooling::Max => max(last_hidden_state, attention_mask),
    })
}

/// `[batch, hidden]` rows scaled to unit L2 norm (rows with norm below 1e-12 are divided by
/// 1e-12, as `torch.nn.functional.normalize` does).
pub(crate) fn l2_normalize(embeddings: Tensor<2>) -> Tensor<2> {
    let norms = embeddings
        .clone()
        .powi_scalar(2)
        .sum_dim(1)
        .sqrt()
        .clamp_min(1e-12);
    embeddings / norms
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> Device {
        crate::Backend::default_compiled()
            .device(0)
            .expect("a CPU backend")
    }

    fn hidden(device: &Device) -> Tensor<3> {
        // Two rows of three tokens, width 2; the second row has one padding token.
        Tensor::from_floats(
            [
                [[1.0, -2.0], [3.0, 4.0], [5.0, 0.0]],
                [[2.0, 2.0], [-4.0, 6.0], [100.0, 100.0]],
            ],
            device,
        )
    }

    fn mask(device: &Device) -> Tensor<2> {
        Tensor::from_floats([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]], device)
    }

    fn values(t: Tensor<2>) -> Vec<f32> {
        t.into_data().try_into_vec().unwrap()
    }

    #[test]
    fn mean_ignores_padding() {
        let d = device();
        assert_eq!(
            values(mean(hidden(&d), mask(&d))),
            [3.0, 2.0 / 3.0, -1.0, 4.0]
        );
    }

    #[test]
    fn max_ignores_padding() {
        let d = device();
        assert_eq!(values(max(hidden(&d), mask(&d))), [5.0, 4.0, 2.0, 6.0]);
    }

    #[test]
    fn cls_takes_first_token() {
        let d = device();
        assert_eq!(values(cls(hidden(&d))), [1.0, -2.0, 2.0, 2.0]);
    }

    #[test]
    fn normalize_gives_unit_rows_and_keeps_zero_rows() {
        let d = device();
        let x = Tensor::from_floats([[3.0, 4.0], [0.0, 0.0]], &d);
        assert_eq!(values(l2_normalize(x)), [0.6, 0.8, 0.0, 0.0]);
    }

    #[test]
    fn pooling_names_round_trip() {
        for p in Pooling::ALL {
            assert_eq!(p.name().parse::<Pooling>().unwrap(), p);
        }
        assert!(
            "avg"
                .parse::<Pooling>()
                .unwrap_err()
                .contains("unknown pooling")
        );
    }
}
