//! Choosing which parts of a multi-task model train.
//!
//! Freezing a part stops gradients for its parameters (an optimizer then leaves them exactly as
//! they are) and turns its dropout off, as Burn's `Module::freeze` does; unfreezing restores
//! both. Parts are named as on the command line: `all`, `encoder`, `embeddings`, `layers:K`
//! (the bottom K encoder layers), `layer:I` (encoder layer I, 0 = bottom), `head:NAME`.

use std::fmt;
use std::str::FromStr;

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::Tensor;

use crate::config::MtlConfig;
use crate::error::{Error, Result};
use crate::model::MultiTaskModel;

/// A part of a [`MultiTaskModel`] that can be frozen or unfrozen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelPart {
    /// The whole model.
    All,
    /// The encoder (embeddings, layers and pooler).
    Encoder,
    /// The embeddings (word, position, token type, their LayerNorm).
    Embeddings,
    /// The bottom `k` encoder layers (`0..k`).
    BottomLayers(usize),
    /// Encoder layer `i` (0 = the one above the embeddings).
    Layer(usize),
    /// The head of the task with this name.
    Head(String),
}

impl fmt::Display for ModelPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelPart::All => f.write_str("all"),
            ModelPart::Encoder => f.write_str("encoder"),
            ModelPart::Embeddings => f.write_str("embeddings"),
            ModelPart::BottomLayers(k) => write!(f, "layers:{k}"),
            ModelPart::Layer(i) => write!(f, "layer:{i}"),
            ModelPart::Head(name) => write!(f, "head:{name}"),
        }
    }
}

impl FromStr for ModelPart {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let number = |n: &str| {
            n.parse::<usize>()
                .map_err(|_| format!("{s:?}: expected a layer count or index after ':'"))
        };
        match s.split_once(':') {
            None => match s {
                "all" => Ok(ModelPart::All),
                "encoder" => Ok(ModelPart::Encoder),
                "embeddings" => Ok(ModelPart::Embeddings),
                _ => Err(format!(
                    "unknown model part {s:?} (expected all, encoder, embeddings, layers:K, layer:I or head:TASK)"
                )),
            },
            Some(("layers", k)) => number(k).map(ModelPart::BottomLayers),
            Some(("layer", i)) => number(i).map(ModelPart::Layer),
            Some(("head", name)) if !name.is_empty() => Ok(ModelPart::Head(name.to_owned())),
            Some(_) => Err(format!(
                "unknown model part {s:?} (expected all, encoder, embeddings, layers:K, layer:I or head:TASK)"
            )),
        }
    }
}

impl MultiTaskModel {
    /// Freezes `part` (see the module documentation); `config` resolves head names.
    pub fn freeze(self, part: &ModelPart, config: &MtlConfig) -> Result<Self> {
        self.set_frozen(part, config, true)
    }

    /// Unfreezes `part`: its parameters take gradients again and its dropout is back on.
    pub fn unfreeze(self, part: &ModelPart, config: &MtlConfig) -> Result<Self> {
        self.set_frozen(part, config, false)
    }

    /// Number of parameter values that take gradients (see [`trainable_parameters`]).
    pub fn trainable_parameters(&self) -> usize {
        trainable_parameters(self)
    }

    fn set_frozen(mut self, part: &ModelPart, config: &MtlConfig, frozen: bool) -> Result<Self> {
        let layers = self.encoder.num_layers();
        let chosen = |range: std::ops::Range<usize>| -> Result<std::ops::Range<usize>> {
            if range.end > layers {
                return Err(Error::InvalidConfig(format!(
                    "{part}: the encoder has {layers} layers (0..{layers})"
                )));
            }
            Ok(range)
        };
        match part {
            ModelPart::All => return Ok(switch(self, frozen)),
            ModelPart::Encoder => self.encoder = switch(self.encoder, frozen),
            ModelPart::Embeddings => {
                self.encoder.embeddings = switch(self.encoder.embeddings, frozen)
            }
            ModelPart::BottomLayers(k) | ModelPart::Layer(k) => {
                let range = match part {
                    ModelPart::Layer(i) => chosen(*i..i + 1)?,
                    _ => chosen(0..*k)?,
                };
                self.encoder.encoder.layer = self
                    .encoder
                    .encoder
                    .layer
                    .into_iter()
                    .enumerate()
                    .map(|(i, layer)| {
                        if range.contains(&i) {
                            switch(layer, frozen)
                        } else {
                            layer
                        }
                    })
                    .collect();
            }
            ModelPart::Head(name) => {
                let task = config.task_index(name)?;
                self.heads = self
                    .heads
                    .into_iter()
                    .enumerate()
                    .map(|(i, head)| {
                        if i == task {
                            switch(head, frozen)
                        } else {
                            head
                        }
                    })
                    .collect();
            }
        }
        Ok(self)
    }
}

/// Number of parameter values of `module` that take gradients (on an autodiff device; on a
/// plain device nothing does). Zero means nothing would train.
pub fn trainable_parameters<M: Module>(module: &M) -> usize {
    struct Counter(usize);
    impl ModuleVisitor for Counter {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let value = param.val();
            if value.is_require_grad() {
                self.0 += value.shape().num_elements();
            }
        }
    }
    let mut counter = Counter(0);
    module.visit(&mut counter);
    counter.0
}

fn switch<M: Module>(module: M, frozen: bool) -> M {
    if frozen {
        module.freeze()
    } else {
        module.unfreeze()
    }
}

impl ModelPart {
    /// Reads a freeze list as given on the command line or in a configuration: each item a
    /// part (see [`FromStr`]), `none` standing for no part (so `--freeze none` overrides a
    /// configured list).
    pub fn parse_list<S: AsRef<str>>(items: &[S]) -> Result<Vec<Self>, String> {
        items
            .iter()
            .map(AsRef::as_ref)
            .filter(|item| *item != "none")
            .map(str::parse)
            .collect()
    }
}

/// What trains in one epoch of gradual unfreezing (ULMFiT's schedule): the heads always, and
/// the top [`layers`](Self::layers) encoder layers, one more every `every` epochs from the
/// top down; once every layer trains, one epoch later the embeddings (and the pooler) too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unfrozen {
    /// Encoder layers that train, counted from the top.
    pub layers: usize,
    /// Whether the embeddings and the rest of the encoder train as well.
    pub embeddings: bool,
}

impl Unfrozen {
    /// The schedule's state in `epoch` (from 0) of a model with `num_layers` encoder layers,
    /// unfreezing one more layer every `every` epochs (at least 1).
    pub fn at(epoch: usize, every: usize, num_layers: usize) -> Self {
        let thawed = epoch / every.max(1);
        Self {
            layers: thawed.min(num_layers),
            embeddings: thawed > num_layers,
        }
    }

    /// `model` with the encoder frozen except what trains in this state (its other parts as
    /// they were).
    pub fn apply(&self, model: MultiTaskModel, config: &MtlConfig) -> Result<MultiTaskModel> {
        let num_layers = model.encoder.num_layers();
        let mut model = model.freeze(&ModelPart::Encoder, config)?;
        for layer in num_layers - self.layers.min(num_layers)..num_layers {
            model = model.unfreeze(&ModelPart::Layer(layer), config)?;
        }
        if self.embeddings {
            model = model.unfreeze(&ModelPart::Encoder, config)?;
        }
        Ok(model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradual_unfreezing_thaws_a_layer_every_few_epochs_then_the_embeddings() {
        let schedule: Vec<Unfrozen> = (0..8).map(|epoch| Unfrozen::at(epoch, 2, 2)).collect();
        let state = |layers, embeddings| Unfrozen { layers, embeddings };
        assert_eq!(
            schedule,
            [
                state(0, false),
                state(0, false),
                state(1, false),
                state(1, false),
                state(2, false),
                state(2, false),
                state(2, true),
                state(2, true),
            ]
        );
        assert_eq!(Unfrozen::at(5, 1, 12), state(5, false));
        assert_eq!(Unfrozen::at(13, 1, 12), state(12, true));
    }

    #[test]
    fn freeze_lists_skip_none() {
        assert_eq!(
            ModelPart::parse_list(&["none", "encoder", "head:a"]),
            Ok(vec![ModelPart::Encoder, ModelPart::Head("a".into())])
        );
        assert_eq!(ModelPart::parse_list::<&str>(&[]), Ok(vec![]));
        assert!(ModelPart::parse_list(&["pooler"]).is_err());
    }

    #[test]
    fn parts_parse_and_print() {
        for text in [
            "all",
            "encoder",
            "embeddings",
            "layers:3",
            "layer:0",
            "head:topic",
        ] {
            assert_eq!(text.parse::<ModelPart>().unwrap().to_string(), text);
        }
        assert!(
            "layers:x"
                .parse::<ModelPart>()
                .unwrap_err()
                .contains("layer count")
        );
        assert!(
            "pooler"
                .parse::<ModelPart>()
                .unwrap_err()
                .contains("unknown model part")
        );
        assert!("head:".parse::<ModelPart>().is_err());
    }
}
