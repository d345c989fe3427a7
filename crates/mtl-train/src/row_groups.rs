//! A training micro-step's forward and backward with each batch split into row groups, one per
//! core, run concurrently.
//!
//! On the pure-Rust CPU backends the matrix products use every core but the element-wise
//! operations (GELU, additions, dropout's multiply, their backward) run on one: a whole batch
//! leaves a core idle for a good part of each step. Rows of a batch are independent, so each
//! group runs its own forward and backward on its own copy of the model's parameters (the
//! same values and parameter ids, a graph of its own, so the two backward passes do not share
//! a lock) and the groups' gradients are summed. The loss is the same sum: a group's mean
//! cross-entropy is weighted by its share of the batch's rows. Dropout's masks are keyed by
//! row ([`mtl_bert::DropoutKey`]), so a split batch draws the masks the whole batch would, and
//! a run stays reproducible step for step (the gradients differ from an unsplit batch's only
//! in the order of floating-point additions).

use burn::module::{Module, ModuleMapper, Param};
use burn::nn::loss::CrossEntropyLoss;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::prelude::*;
use mtl_bert::BertInput;
use mtl_model::MultiTaskModel;
use rayon::prelude::*;

/// One task's batch in a training micro-step: a term `weight * mean cross-entropy` of the loss.
#[derive(Debug, Clone, Copy)]
pub struct LossTerm<'a> {
    /// The encoder's input; its dropout key decides the masks.
    pub input: &'a BertInput,
    /// The task whose head scores the batch.
    pub task: usize,
    /// `[batch]` label indices.
    pub labels: &'a [i64],
    /// The term's weight in the summed loss.
    pub weight: f64,
}

/// The gradients of `sum over terms of weight * mean cross-entropy` with respect to `model`'s
/// trainable parameters, and each term's logits (`[batch, labels]`, detached), with every
/// batch split into `groups` row groups run concurrently on rayon's pool (at most one group
/// per row; 1 runs each batch whole).
///
/// # Panics
/// If `terms` is empty or a term has no rows.
pub fn backward_in_row_groups(
    model: &MultiTaskModel,
    loss: &CrossEntropyLoss,
    terms: &[LossTerm],
    groups: usize,
) -> (GradientsParams, Vec<Tensor<2>>) {
    let fewest_rows = terms.iter().map(|t| t.labels.len()).min();
    let groups = groups.clamp(1, fewest_rows.expect("a micro-step has a batch"));
    let group = |g: usize| {
        let replica = model.clone().map(&mut NewGraph);
        let mut total: Option<Tensor<1>> = None;
        let mut logits = Vec::with_capacity(terms.len());
        for term in terms {
            let rows = term.labels.len();
            let range = g * rows / groups..(g + 1) * rows / groups;
            let input = term.input.rows(range.clone());
            let device = input.input_ids.device();
            let output = replica.forward(&input, term.task);
            let labels = term.labels[range.clone()].to_vec();
            let targets =
                Tensor::<1, Int>::from_data(TensorData::new(labels, [range.len()]), &device);
            let share = range.len() as f64 / rows as f64;
            let term_loss = loss
                .forward(output.clone(), targets)
                .mul_scalar(term.weight * share);
            total = Some(match total {
                Some(total) => total + term_loss,
                None => term_loss,
            });
            logits.push(output.detach());
        }
        let total = total.expect("a micro-step has a batch");
        (
            GradientsParams::from_grads(total.backward(), &replica),
            logits,
        )
    };
    let results: Vec<_> = if groups == 1 {
        vec![group(0)]
    } else {
        (0..groups).into_par_iter().map(group).collect()
    };
    let mut accumulator = GradientsAccumulator::<MultiTaskModel>::new();
    let mut parts: Vec<Vec<Tensor<2>>> = vec![Vec::with_capacity(groups); terms.len()];
    for (grads, logits) in results {
        accumulator.accumulate(model, grads);
        for (part, logits) in parts.iter_mut().zip(logits) {
            part.push(logits);
        }
    }
    let logits = parts.into_iter().map(|p| Tensor::cat(p, 0)).collect();
    (accumulator.grads(), logits)
}

/// Gives every float parameter a new autodiff node (same value, id and `require_grad`): a
/// graph of its own, whose backward does not lock the graph of another copy.
struct NewGraph;

impl ModuleMapper for NewGraph {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(|tensor| tensor.detach())
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::loss::CrossEntropyLossConfig;
    use mtl_bert::{BertConfig, BertModel, DropoutKey};
    use mtl_model::{MtlConfig, TaskConfig};

    use super::*;

    fn tiny_model(device: &Device) -> MultiTaskModel {
        let json = r#"{"vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 2,
            "num_attention_heads": 2, "intermediate_size": 32, "max_position_embeddings": 32}"#;
        let config = BertConfig::from_json(json, std::path::Path::new("config.json")).unwrap();
        let encoder = BertModel::init(&config, false, device);
        let mtl = MtlConfig::new(vec![
            TaskConfig::new("a", &["x", "y", "z"]),
            TaskConfig::new("b", &["p", "q"]),
        ]);
        MultiTaskModel::new(encoder, &config, &mtl, 1, device)
    }

    fn input(rows: usize, seq: usize, device: &Device) -> BertInput {
        let ids: Vec<i64> = (0..rows * seq).map(|i| (i * 7 % 49 + 1) as i64).collect();
        let mut mask = vec![1.0f32; rows * seq];
        // Ragged rows: row r has seq - r % 3 tokens.
        for r in 0..rows {
            for t in seq - r % 3..seq {
                mask[r * seq + t] = 0.0;
            }
        }
        BertInput {
            input_ids: Tensor::from_data(TensorData::new(ids, [rows, seq]), device),
            token_type_ids: Tensor::zeros([rows, seq], device),
            attention_mask: Tensor::from_data(TensorData::new(mask, [rows, seq]), device),
            dropout: Some(DropoutKey::new(11)),
        }
    }

    /// Gradients and logits of a split micro-step equal the whole batch's (dropout on: the
    /// masks are keyed by row), up to the order of float additions. On flex, explicitly: the
    /// backend whose training splits batches and runs the fused bias + GELU backward (a build
    /// with wgpu or tch compiled in would otherwise pick that as the default device).
    #[cfg(feature = "flex")]
    #[test]
    fn split_batches_give_the_whole_batchs_gradients() {
        let device = mtl_bert::Backend::Flex.device(0).unwrap().autodiff();
        let model = tiny_model(&device);
        let loss = CrossEntropyLossConfig::new().init(&device);
        let (a, b) = (input(7, 9, &device), input(5, 9, &device));
        let (la, lb) = ([0, 1, 2, 0, 1, 2, 0], [1, 0, 1, 1, 0]);
        let terms = [
            LossTerm {
                input: &a,
                task: 0,
                labels: &la,
                weight: 0.5,
            },
            LossTerm {
                input: &b,
                task: 1,
                labels: &lb,
                weight: 1.5,
            },
        ];
        let (mut whole, whole_logits) = backward_in_row_groups(&model, &loss, &terms, 1);
        for groups in [2, 3, 5] {
            let (mut split, split_logits) = backward_in_row_groups(&model, &loss, &terms, groups);
            for (w, s) in whole_logits.iter().zip(&split_logits) {
                let diff = max_relative_diff(w.clone(), s.clone());
                assert!(diff <= 1e-5, "{groups} groups: logits differ by {diff}");
            }
            let (mut compared, mut parameters) = (0, 0);
            model.visit(&mut CompareGrads {
                whole: &mut whole,
                split: &mut split,
                compared: &mut compared,
                parameters: &mut parameters,
                groups,
            });
            // The model has no pooler: every parameter has a gradient in both runs.
            assert!(
                compared > 10 && compared == parameters,
                "compared {compared} of {parameters} parameters"
            );
        }
    }

    /// The largest difference of `a` and `b` over the largest `|a|` (at least 1e-3); NaN or
    /// infinity anywhere gives infinity.
    fn max_relative_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        let a: Vec<f32> = a.into_data().try_into_vec().unwrap();
        let b: Vec<f32> = b.into_data().try_into_vec().unwrap();
        assert_eq!(a.len(), b.len());
        if a.iter().chain(&b).any(|v| !v.is_finite()) {
            return f32::INFINITY;
        }
        let scale = a.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
        a.iter()
            .zip(&b)
            .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
            / scale
    }

    struct CompareGrads<'a> {
        whole: &'a mut GradientsParams,
        split: &'a mut GradientsParams,
        compared: &'a mut usize,
        parameters: &'a mut usize,
        groups: usize,
    }

    impl burn::module::ModuleVisitor for CompareGrads<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            *self.parameters += 1;
            let (w, s) = match (self.whole.get::<D>(param.id), self.split.get::<D>(param.id)) {
                (Some(w), Some(s)) => (w, s),
                (None, None) => return,
                _ => panic!(
                    "{} groups: a parameter has a gradient in one run only",
                    self.groups
                ),
            };
            let diff = max_relative_diff(w, s);
            assert!(
                diff <= 1e-4,
                "{} groups: a gradient differs by {diff} of its largest value",
                self.groups
            );
            *self.compared += 1;
        }
    }
}
