//! Pooled sentence vectors computed once by a frozen encoder, so only the heads train.
//!
//! When no encoder parameter can change, the encoder's output for an example is the same at
//! every step (its dropout is off once frozen), so it is computed once per example and training
//! runs the heads alone: dropout on the cached vector, then the head, exactly as the uncached
//! model does after its frozen encoder.

use crate::error::{Error, Result};
use burn::prelude::*;
use mtl_data::TokenizedTask;
use mtl_model::MultiTaskModel;

/// For each task, `[examples, hidden]` pooled vectors on the training device.
pub struct EmbeddingCache {
    pooled: Vec<Tensor<2>>,
}

impl EmbeddingCache {
    /// Runs the encoder of `model` (in evaluation mode) over every example of every task, in
    /// `batch_size` batches sorted by length; `progress` is called with each batch's size.
    pub fn compute(
        model: &MultiTaskModel,
        tasks: &[TokenizedTask],
        batch_size: usize,
        device: &Device,
        mut progress: impl FnMut(usize),
    ) -> Result<Self> {
        let encoder = model.valid();
        let plain = device.clone().without_autodiff();
        let mut pooled = Vec::with_capacity(tasks.len());
        for (index, task) in tasks.iter().enumerate() {
            let mut rows: Vec<f32> = Vec::new();
            let mut width = 0;
            for batch in task.eval_batches(index, batch_size, true) {
                let vectors = encoder.pooled(&batch.tokens.to_input(&plain));
                width = vectors.dims()[1];
                if rows.is_empty() {
                    rows = vec![0.0; task.len() * width];
                }
                let values: Vec<f32> = vectors
                    .into_data()
                    .try_into_vec()
                    .map_err(|e| Error::Tensor(format!("reading pooled vectors back: {e:?}")))?;
                for (row, &example) in values.chunks_exact(width).zip(&batch.examples) {
                    rows[example * width..(example + 1) * width].copy_from_slice(row);
                }
                progress(batch.examples.len());
            }
            pooled.push(Tensor::from_data(
                TensorData::new(rows, [task.len(), width]),
                device,
            ));
        }
        Ok(Self { pooled })
    }

    /// The cached vectors of `examples` of task `task`: `[examples, hidden]`.
    pub fn batch(&self, task: usize, examples: &[usize]) -> Tensor<2> {
        let device = self.pooled[task].device();
        let indices: Vec<i64> = examples.iter().map(|&i| i as i64).collect();
        let indices =
            Tensor::<1, Int>::from_data(TensorData::new(indices, [examples.len()]), &device);
        self.pooled[task].clone().select(0, indices)
    }
}
