//! Running a model over one task's split and scoring it.

use crate::error::{Context, Error, Result};
use burn::prelude::*;
use mtl_data::{TaskBatch, TokenizedTask};
use mtl_model::MultiTaskModel;

use crate::metrics::{ConfusionMatrix, TaskMetrics};

/// Scores every example of `data` (task index `task`) with the logits that `logits` returns
/// for each batch (`[batch, labels]`), in batches of `batch_size` sorted by length.
///
/// The loss is the mean cross-entropy over all labels. With `allowed`, predictions are the
/// most probable label among the allowed ones (e.g. a 3-class sentiment head scored on
/// 2-class data).
pub fn evaluate_with(
    data: &TokenizedTask,
    task: usize,
    batch_size: usize,
    allowed: Option<&[bool]>,
    mut logits: impl FnMut(&TaskBatch) -> Tensor<2>,
) -> Result<TaskMetrics> {
    let labels = data.labels().len();
    let mut confusion = ConfusionMatrix::new(labels);
    let mut loss_sum = 0.0;
    for batch in data.eval_batches(task, batch_size, true) {
        let values: Vec<f32> = logits(&batch)
            .into_data()
            .try_into_vec()
            .map_err(|e| Error::Tensor(format!("reading logits back: {e:?}")))?;
        for (row, &truth) in values.chunks_exact(labels).zip(&batch.labels) {
            let truth = truth as usize;
            loss_sum += cross_entropy(row, truth);
            confusion.add(truth, argmax(row, allowed));
        }
    }
    Ok(TaskMetrics::new(
        data.name(),
        data.labels(),
        confusion,
        loss_sum,
    ))
}

/// Scores `model` (which should be in evaluation mode: see `Module::valid`) on `data`.
pub fn evaluate(
    model: &MultiTaskModel,
    device: &Device,
    data: &TokenizedTask,
    task: usize,
    batch_size: usize,
    allowed: Option<&[bool]>,
) -> Result<TaskMetrics> {
    evaluate_with(data, task, batch_size, allowed, |batch| {
        model.forward(&batch.tokens.to_input(device), task)
    })
    .with_context(|| format!("evaluating task {}", data.name()))
}

/// `-log softmax(row)[target]`, computed in f64.
pub fn cross_entropy(row: &[f32], target: usize) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let log_sum: f64 = row
        .iter()
        .map(|&x| (x as f64 - max).exp())
        .sum::<f64>()
        .ln()
        + max;
    log_sum - row[target] as f64
}

/// Index of the largest value (among `allowed` ones when given); the first on ties.
pub fn argmax(row: &[f32], allowed: Option<&[bool]>) -> usize {
    let mut best = None;
    for (i, &x) in row.iter().enumerate() {
        if allowed.is_some_and(|a| !a[i]) {
            continue;
        }
        if best.is_none_or(|(_, b)| x > b) {
            best = Some((i, x));
        }
    }
    best.map_or(0, |(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_entropy_is_stable_and_correct() {
        let ce = cross_entropy(&[0.0, 0.0], 1);
        assert!((ce - std::f64::consts::LN_2).abs() < 1e-12);
        let ce = cross_entropy(&[1000.0, 0.0], 0);
        assert!(ce.abs() < 1e-12, "{ce}");
    }

    #[test]
    fn argmax_respects_allowed_labels() {
        assert_eq!(argmax(&[0.1, 0.7, 0.2], None), 1);
        assert_eq!(argmax(&[0.1, 0.7, 0.2], Some(&[true, false, true])), 2);
        assert_eq!(argmax(&[0.5, 0.5], None), 0);
    }
}
