//! A task's classification head, initialised from a seed.

use burn::module::Param;
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::prelude::*;
use burn::tensor::activation::tanh;
use mtl_bert::{DropoutKey, dropout};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::HeadKind;

/// Standard deviation of the initial head weights: `initializer_range` of BERT, as
/// `transformers` initialises `BertForSequenceClassification`'s classifier (biases start at 0).
pub(crate) const INIT_STD: f64 = 0.02;

/// Pooled sentence vector -> logits. Saved as `heads.<task>.{hidden,output}.{weight,bias}`.
#[derive(Module, Debug)]
pub struct ClassificationHead {
    /// `[hidden, width]` hidden layer of an MLP head; `None` for a linear head.
    pub hidden: Option<Linear>,
    /// Dropout after the hidden layer's tanh, in training only.
    pub dropout: Dropout,
    /// `[width or hidden, labels]` output layer.
    pub output: Linear,
}

impl ClassificationHead {
    /// A head of `kind` from `input` features to `labels` logits, with weights drawn from
    /// N(0, 0.02) by a ChaCha8 generator seeded with `seed`: the same seed gives the same head
    /// on every backend.
    pub fn init(
        kind: HeadKind,
        input: usize,
        labels: usize,
        dropout: f64,
        seed: u64,
        device: &Device,
    ) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (hidden, output_input) = match kind {
            HeadKind::Linear => (None, input),
            HeadKind::Mlp { width } => (Some(seeded_linear(input, width, &mut rng, device)), width),
        };
        Self {
            hidden,
            dropout: DropoutConfig::new(dropout).init(),
            output: seeded_linear(output_input, labels, &mut rng, device),
        }
    }

    /// `[batch, input]` -> `[batch, labels]` logits; in training, the MLP's dropout masks come
    /// from `key`.
    pub fn forward(&self, pooled: Tensor<2>, key: Option<DropoutKey>) -> Tensor<2> {
        let features = match &self.hidden {
            Some(hidden) => dropout(&self.dropout, tanh(hidden.forward(pooled)), key),
            None => pooled,
        };
        self.output.forward(features)
    }

    /// Number of labels (outputs).
    pub fn num_labels(&self) -> usize {
        self.output.weight.dims()[1]
    }
}

fn seeded_linear(input: usize, output: usize, rng: &mut ChaCha8Rng, device: &Device) -> Linear {
    let weights: Vec<f32> = (0..input * output)
        .map(|_| (standard_normal(rng) * INIT_STD) as f32)
        .collect();
    Linear {
        weight: Param::from_tensor(Tensor::from_data(
            TensorData::new(weights, [input, output]),
            device,
        )),
        bias: Some(Param::from_tensor(Tensor::zeros([output], device))),
    }
}

/// One draw from N(0, 1) by the Box-Muller transform (stable across `rand` versions, unlike
/// `rand_distr`'s ziggurat tables).
fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]: ln is finite
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weights(head: &ClassificationHead) -> Vec<f32> {
        head.output.weight.val().into_data().try_into_vec().unwrap()
    }

    #[test]
    fn same_seed_same_head_other_seed_other_head() {
        let device = mtl_bert::Backend::default_compiled().device(0).unwrap();
        let a = ClassificationHead::init(HeadKind::Linear, 16, 3, 0.1, 7, &device);
        let b = ClassificationHead::init(HeadKind::Linear, 16, 3, 0.1, 7, &device);
        let c = ClassificationHead::init(HeadKind::Linear, 16, 3, 0.1, 8, &device);
        assert_eq!(weights(&a), weights(&b));
        assert_ne!(weights(&a), weights(&c));
        assert_eq!(a.num_labels(), 3);
    }

    #[test]
    fn initial_weights_have_the_intended_spread() {
        let device = mtl_bert::Backend::default_compiled().device(0).unwrap();
        let head = ClassificationHead::init(HeadKind::Mlp { width: 64 }, 384, 5, 0.1, 1, &device);
        let w: Vec<f32> = head
            .hidden
            .unwrap()
            .weight
            .val()
            .into_data()
            .try_into_vec()
            .unwrap();
        let n = w.len() as f64;
        let mean = w.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let std = (w
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / n)
            .sqrt();
        // 24,576 draws: the sample mean and std are within a few standard errors of 0 and 0.02.
        assert!(mean.abs() < 0.0005, "mean {mean}");
        assert!((std - INIT_STD).abs() < 0.0005, "std {std}");
    }
}
