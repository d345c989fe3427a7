//! AdamW as BERT fine-tuning uses it in PyTorch: parameter groups (no weight decay on biases
//! and LayerNorm), separate and layer-wise learning rates, linear warmup then linear decay,
//! and clipping by the global gradient norm.
//!
//! Burn's defaults differ on every one of these points (AdamW epsilon 1e-5 and weight decay
//! 1e-4 on every parameter; per-tensor gradient clipping), so each is set up here explicitly.

use std::path::Path;

use crate::error::{Error, Result};
use burn::module::{Module, ModuleVisitor, Param, ParamGroup, ParamId};
use burn::optim::lr_scheduler::LrSchedulerConfig;
use burn::optim::lr_scheduler::module_lr_scheduler::ModuleLrSchedulerConfig;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use mtl_model::MultiTaskModel;

use crate::config::TrainConfig;

/// PyTorch's AdamW epsilon.
pub const ADAM_EPSILON: f32 = 1e-8;

/// `transformers.get_linear_schedule_with_warmup`: the learning-rate multiplier of optimiser
/// step `step` (0-based): `step / warmup` while warming up, then falling linearly to 0 at
/// `total`.
pub fn lr_factor(step: usize, warmup: usize, total: usize) -> f64 {
    if step < warmup {
        return step as f64 / warmup.max(1) as f64;
    }
    (total.saturating_sub(step) as f64 / total.saturating_sub(warmup).max(1) as f64).max(0.0)
}

/// A parameter's id and its path in the model (`encoder.encoder.layer.3.output.dense.weight`).
#[derive(Debug, Clone)]
pub struct ParamPath {
    /// The parameter's id.
    pub id: ParamId,
    /// Its path, with Burn's names (`gamma`/`beta` for LayerNorm).
    pub path: String,
}

/// Every float parameter of `module` with its path.
pub fn param_paths<M: Module>(module: &M) -> Vec<ParamPath> {
    #[derive(Default)]
    struct Paths {
        stack: Vec<String>,
        found: Vec<ParamPath>,
    }
    impl ModuleVisitor for Paths {
        fn enter_module(&mut self, name: &str, _container: &str) {
            self.stack.push(name.to_owned());
        }
        fn exit_module(&mut self, _name: &str, _container: &str) {
            self.stack.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.found.push(ParamPath {
                id: param.id,
                path: self.stack.join("."),
            });
        }
    }
    let mut paths = Paths::default();
    module.visit(&mut paths);
    paths.found
}

/// Whether weight decay skips this parameter: biases and LayerNorm scales and shifts.
pub fn skips_weight_decay(path: &str) -> bool {
    path.ends_with(".bias") || path.ends_with(".gamma") || path.ends_with(".beta")
}

/// The peak learning rate of a parameter: the heads' rate, or the encoder's with layer-wise
/// decay (`decay^(L-1-i)` for layer `i` of `L`, `decay^L` for the embeddings; the pooler
/// counts as the top layer).
pub fn peak_lr(path: &str, layers: usize, config: &TrainConfig) -> f64 {
    let Some(rest) = path.strip_prefix("encoder.") else {
        return config.head_lr;
    };
    let depth_from_top = if rest.starts_with("embeddings.") {
        layers
    } else if let Some(layer) = rest.strip_prefix("encoder.layer.") {
        let index: usize = layer
            .split('.')
            .next()
            .and_then(|i| i.parse().ok())
            .unwrap_or(0);
        layers - 1 - index.min(layers - 1)
    } else {
        0
    };
    config.encoder_lr * config.layer_lr_decay.powi(depth_from_top as i32)
}

/// The optimiser of a training run and its learning-rate schedule.
pub struct TrainOptimizer {
    optim: ModuleOptimizer,
    /// `(parameters, peak lr)` of each learning-rate group except the heads'.
    lr_groups: Vec<(Vec<ParamId>, f64)>,
    head_lr: f64,
    warmup: usize,
    total: usize,
    max_grad_norm: f64,
}

impl TrainOptimizer {
    /// AdamW (betas 0.9/0.999, epsilon 1e-8, decoupled weight decay except on biases and
    /// LayerNorm) over `model`, scheduled over `total` optimiser steps.
    pub fn new(model: &MultiTaskModel, config: &TrainConfig, total: usize) -> Self {
        let layers = model.encoder.num_layers();
        let params = param_paths(model);
        let adamw = |decay: f64| {
            AdamWConfig::new()
                .with_epsilon(ADAM_EPSILON)
                .with_weight_decay(decay as f32)
        };
        let no_decay: Vec<ParamId> = params
            .iter()
            .filter(|p| skips_weight_decay(&p.path))
            .map(|p| p.id)
            .collect();
        let optim = adamw(config.weight_decay).init().with_group(
            ParamGroup::from_ids(no_decay),
            adamw(0.0).build(),
            None,
        );
        let mut lr_groups: Vec<(Vec<ParamId>, f64)> = Vec::new();
        for param in params.iter().filter(|p| p.path.starts_with("encoder.")) {
            let lr = peak_lr(&param.path, layers, config);
            match lr_groups.iter_mut().find(|(_, group_lr)| *group_lr == lr) {
                Some((ids, _)) => ids.push(param.id),
                None => lr_groups.push((vec![param.id], lr)),
            }
        }
        Self {
            optim,
            lr_groups,
            head_lr: config.head_lr,
            warmup: (config.warmup_ratio * total as f64).round() as usize,
            total,
            max_grad_norm: config.max_grad_norm,
        }
    }

    /// Number of optimiser steps the schedule spans.
    pub fn total_steps(&self) -> usize {
        self.total
    }

    /// The learning rates at `step`: the encoder's top layer and the heads.
    pub fn lrs(&self, step: usize) -> (f64, f64) {
        let factor = lr_factor(step, self.warmup, self.total);
        let encoder = self.lr_groups.iter().map(|(_, lr)| *lr).fold(0.0, f64::max);
        (encoder * factor, self.head_lr * factor)
    }

    /// Clips `grads` to the global norm, then takes optimiser step `step` (0-based). Returns
    /// the updated model and the gradient norm before clipping.
    pub fn step(
        &mut self,
        model: MultiTaskModel,
        grads: GradientsParams,
        step: usize,
    ) -> (MultiTaskModel, Tensor<1>) {
        let (grads, norm) = clip_global_norm(&model, grads, self.max_grad_norm);
        let factor = lr_factor(step, self.warmup, self.total);
        let mut policy =
            ModuleLrSchedulerConfig::new(LrSchedulerConfig::Constant(self.head_lr * factor));
        for (ids, lr) in &self.lr_groups {
            policy = policy.with_group(
                ParamGroup::from_ids(ids.clone()),
                LrSchedulerConfig::Constant(lr * factor),
            );
        }
        let lrs = policy
            .init()
            .expect("constant learning rates are valid")
            .step();
        (self.optim.step(lrs, model, grads), norm)
    }

    /// Writes the optimiser state (moments and step counts, by parameter id).
    pub fn save(&self, path: &Path) -> Result<()> {
        self.optim.save(path).map_err(|e| {
            Error::Tensor(format!(
                "saving the optimiser state to {}: {e:?}",
                path.display()
            ))
        })
    }

    /// Reads the optimiser state written by [`save`](Self::save) for the same model.
    pub fn load(mut self, path: &Path) -> Result<Self> {
        self.optim = self.optim.load(path).map_err(|e| {
            Error::Checkpoint(format!(
                "loading the optimiser state from {}: {e:?}",
                path.display()
            ))
        })?;
        Ok(self)
    }
}

/// Scales every gradient by `min(1, max_norm / (norm + 1e-6))`, where `norm` is the L2 norm of
/// all gradients together (`torch.nn.utils.clip_grad_norm_`); `max_norm` 0 only measures.
/// Returns the gradients and the norm before clipping, `[1]`.
pub fn clip_global_norm<M: Module>(
    module: &M,
    grads: GradientsParams,
    max_norm: f64,
) -> (GradientsParams, Tensor<1>) {
    struct SumOfSquares<'a> {
        grads: &'a GradientsParams,
        total: Option<Tensor<1>>,
    }
    impl ModuleVisitor for SumOfSquares<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(grad) = self.grads.get::<D>(param.id) {
                let sum = grad.square().sum();
                self.total = Some(match self.total.take() {
                    Some(total) => total + sum,
                    None => sum,
                });
            }
        }
    }
    struct Scale {
        grads: GradientsParams,
        scale: Tensor<1>,
    }
    impl ModuleVisitor for Scale {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(grad) = self.grads.remove::<D>(param.id) {
                let scale = self.scale.clone().reshape([1; D]);
                self.grads.register(param.id, grad * scale);
            }
        }
    }
    let mut sum = SumOfSquares {
        grads: &grads,
        total: None,
    };
    module.visit(&mut sum);
    let Some(total) = sum.total else {
        return (grads, Tensor::zeros([1], &Device::default()));
    };
    let norm = total.sqrt();
    if max_norm <= 0.0 {
        return (grads, norm);
    }
    let scale = (norm.clone().add_scalar(1e-6).recip() * max_norm).clamp_max(1.0);
    let mut scaler = Scale { grads, scale };
    module.visit(&mut scaler);
    (scaler.grads, norm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_matches_transformers() {
        // get_linear_schedule_with_warmup(num_warmup_steps=2, num_training_steps=10)
        let factors: Vec<f64> = (0..11).map(|s| lr_factor(s, 2, 10)).collect();
        let expected = [
            0.0, 0.5, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125, 0.0,
        ];
        for (got, want) in factors.iter().zip(expected) {
            assert!((got - want).abs() < 1e-12, "{factors:?}");
        }
        assert_eq!(lr_factor(0, 0, 4), 1.0);
    }

    #[test]
    fn layer_wise_rates_decay_down_the_encoder() {
        let config = TrainConfig {
            encoder_lr: 1e-4,
            head_lr: 1e-3,
            layer_lr_decay: 0.5,
            ..TrainConfig::default()
        };
        assert_eq!(peak_lr("heads.0.output.weight", 6, &config), 1e-3);
        assert_eq!(
            peak_lr("encoder.encoder.layer.5.output.dense.weight", 6, &config),
            1e-4
        );
        assert_eq!(
            peak_lr("encoder.encoder.layer.4.output.dense.weight", 6, &config),
            5e-5
        );
        assert_eq!(
            peak_lr("encoder.encoder.layer.0.output.dense.weight", 6, &config),
            1e-4 / 32.0
        );
        assert_eq!(
            peak_lr("encoder.embeddings.word_embeddings.weight", 6, &config),
            1e-4 / 64.0
        );
        assert_eq!(peak_lr("encoder.pooler.dense.weight", 6, &config), 1e-4);
    }

    #[test]
    fn decay_skips_biases_and_layer_norms() {
        assert!(skips_weight_decay("encoder.embeddings.layer_norm.gamma"));
        assert!(skips_weight_decay("heads.1.output.bias"));
        assert!(!skips_weight_decay(
            "encoder.encoder.layer.0.intermediate.dense.weight"
        ));
    }
}
