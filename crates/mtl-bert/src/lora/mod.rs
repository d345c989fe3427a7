//! LoRA adapters on the encoder's linear layers (Hu et al. 2021, "LoRA: Low-Rank Adaptation of
//! Large Language Models", <https://arxiv.org/abs/2106.09685>), as Hugging Face PEFT builds
//! them (`peft/tuners/lora/layer.py`, `Linear`).
//!
//! An adapted layer computes `x W + b + (alpha / r) (x A) B`, with `A` `[in, r]` and `B`
//! `[r, out]`; the frozen `W` and `b` are the encoder's. `A` starts uniform in
//! `[-1/sqrt(in), 1/sqrt(in))` (PEFT's `kaiming_uniform_(a = sqrt(5))`) and `B` at zero, so a
//! new adapter leaves the encoder's outputs unchanged. PEFT's `lora_dropout` is 0 here.
//!
//! [`LoraAdapter`] holds one layer's worth of adapters per encoder layer; [`peft`] saves and
//! loads it as PEFT does (`adapter_config.json`, `adapter_model.safetensors`).

pub mod peft;

use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::config::BertConfig;
use crate::model::BertModel;

/// Which of each layer's linear layers get an adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LoraTargets {
    /// The attention projections: query, key, value and the attention output (the default).
    #[default]
    Attention,
    /// The attention projections and the feed-forward layers (intermediate and output).
    All,
}

impl LoraTargets {
    /// The adapted layers' names in a [`LayerLora`], in its field order.
    pub fn layers(self) -> &'static [&'static str] {
        match self {
            Self::Attention => &["query", "key", "value", "attention_output"],
            Self::All => &[
                "query",
                "key",
                "value",
                "attention_output",
                "intermediate",
                "output",
            ],
        }
    }
}

impl std::str::FromStr for LoraTargets {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "attention" => Ok(Self::Attention),
            "all" => Ok(Self::All),
            _ => Err(format!(
                "unknown adapter targets {text:?} (expected attention or all)"
            )),
        }
    }
}

impl std::fmt::Display for LoraTargets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Attention => "attention",
            Self::All => "all",
        })
    }
}

/// An adapter's shape: rank, scale and targets.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    /// The rank `r` of `A` and `B` (at least 1).
    pub rank: usize,
    /// `alpha`: the update is scaled by `alpha / r` (PEFT's `lora_alpha`).
    pub alpha: f64,
    /// The adapted layers.
    #[serde(default)]
    pub targets: LoraTargets,
}

impl LoraConfig {
    /// `alpha / rank`, the factor of `(x A) B`.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }
}

/// One adapted linear layer's `A` and `B` (`lora_A` and `lora_B` in PEFT, whose `weight`s are
/// these matrices transposed: Burn's `Linear` keeps `[in, out]`).
#[derive(Module, Debug)]
pub struct Lora {
    /// `[in, r]`.
    pub lora_a: Linear,
    /// `[r, out]`, zeros when new.
    pub lora_b: Linear,
    /// `alpha / r`.
    #[module(skip)]
    pub scale: f64,
}

impl Lora {
    /// A new adapter for an `input -> output` layer: `A` drawn from `rng`, `B` zero.
    fn init(
        input: usize,
        output: usize,
        config: &LoraConfig,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Self {
        let bound = 1.0 / (input as f64).sqrt();
        let a: Vec<f32> = (0..input * config.rank)
            .map(|_| ((rng.random::<f64>() * 2.0 - 1.0) * bound) as f32)
            .collect();
        let matrix = |values: Tensor<2>| Linear {
            weight: Param::from_tensor(values),
            bias: None,
        };
        Self {
            lora_a: matrix(Tensor::from_data(
                TensorData::new(a, [input, config.rank]),
                device,
            )),
            lora_b: matrix(Tensor::zeros([config.rank, output], device)),
            scale: config.scale(),
        }
    }

    /// `(alpha / r) (x A) B`: `[..., in]` -> `[..., out]`.
    pub fn delta<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        self.lora_b
            .forward(self.lora_a.forward(x))
            .mul_scalar(self.scale)
    }
}

/// `base + lora.delta(x)`, or `base` without an adapter.
pub(crate) fn adapted<const D: usize>(
    base: Tensor<D>,
    lora: Option<&Lora>,
    x: Tensor<D>,
) -> Tensor<D> {
    match lora {
        Some(lora) => base + lora.delta(x),
        None => base,
    }
}

/// The adapters of one encoder layer (a field is `None` when its layer is not a target).
#[derive(Module, Debug)]
pub struct LayerLora {
    /// `attention.self.query`.
    pub query: Option<Lora>,
    /// `attention.self.key`.
    pub key: Option<Lora>,
    /// `attention.self.value`.
    pub value: Option<Lora>,
    /// `attention.output.dense`.
    pub attention_output: Option<Lora>,
    /// `intermediate.dense`.
    pub intermediate: Option<Lora>,
    /// `output.dense`.
    pub output: Option<Lora>,
}

/// One adapter set for the whole encoder: a [`LayerLora`] per layer, bottom first.
#[derive(Module, Debug)]
pub struct LoraAdapter {
    /// `encoder.layer.N`'s adapters.
    pub layers: Vec<LayerLora>,
    /// Rank, alpha and targets.
    #[module(skip)]
    pub config: LoraConfig,
}

impl LoraAdapter {
    /// A new adapter set for an encoder of `bert`'s shape: every `A` drawn from a ChaCha8
    /// generator seeded with `seed` (the same seed gives the same adapter), every `B` zero.
    pub fn init(config: &LoraConfig, bert: &BertConfig, seed: u64, device: &Device) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let hidden = bert.hidden_size;
        let wide = bert.intermediate_size;
        let mut one = |input, output, target: &str| {
            config
                .targets
                .layers()
                .contains(&target)
                .then(|| Lora::init(input, output, config, &mut rng, device))
        };
        let layers = (0..bert.num_hidden_layers)
            .map(|_| LayerLora {
                query: one(hidden, hidden, "query"),
                key: one(hidden, hidden, "key"),
                value: one(hidden, hidden, "value"),
                attention_output: one(hidden, hidden, "attention_output"),
                intermediate: one(hidden, wide, "intermediate"),
                output: one(wide, hidden, "output"),
            })
            .collect();
        Self {
            layers,
            config: *config,
        }
    }

    /// Panics unless the set is for `model`'s number of layers.
    pub(crate) fn assert_fits(&self, model: &BertModel) {
        assert_eq!(
            self.layers.len(),
            model.encoder.layer.len(),
            "a LoRA adapter set for {} layers on an encoder of {}",
            self.layers.len(),
            model.encoder.layer.len()
        );
    }

    /// `model` with every adapted layer's update merged into its weight (`W + (alpha / r) A B`,
    /// as PEFT's `merge_and_unload`): a plain encoder that computes what `model` computes with
    /// this adapter set, up to rounding.
    ///
    /// # Panics
    /// If the adapter set is for another number of layers.
    pub fn merge_into(&self, mut model: BertModel) -> BertModel {
        self.assert_fits(&model);
        for (layer, lora) in model.encoder.layer.iter_mut().zip(&self.layers) {
            let attention = &mut layer.attention.self_attention;
            merge(&mut attention.query, lora.query.as_ref());
            merge(&mut attention.key, lora.key.as_ref());
            merge(&mut attention.value, lora.value.as_ref());
            merge(
                &mut layer.attention.output.dense,
                lora.attention_output.as_ref(),
            );
            merge(&mut layer.intermediate.dense, lora.intermediate.as_ref());
            merge(&mut layer.output.dense, lora.output.as_ref());
        }
        model
    }
}

/// `linear`'s weight plus `lora`'s update.
fn merge(linear: &mut Linear, lora: Option<&Lora>) {
    if let Some(lora) = lora {
        let update = lora
            .lora_a
            .weight
            .val()
            .matmul(lora.lora_b.weight.val())
            .mul_scalar(lora.scale);
        let merged = (linear.weight.val() + update).detach();
        linear.weight = Param::from_tensor(merged);
    }
}

#[cfg(test)]
mod tests;
