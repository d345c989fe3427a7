//! Training batches of several tasks, one task per batch, in the order of an [`EpochPlan`].
//!
//! This is a plain deterministic iterator rather than Burn's `DataLoader`/`Batcher`: Burn's
//! loader shuffles with `rand`'s `StdRng` (whose algorithm may change between versions), has no
//! notion of choosing a task per batch, and cannot restart in the middle of an epoch. Here the
//! whole epoch is planned up front from the seed, tokenization is done once per task, and a
//! batch is padded only when it is reached, so resuming at step `k` costs nothing.

use crate::error::{Error, Result};
use crate::plan::{EpochPlan, PlanConfig};
use crate::tokenized::{TaskBatch, TokenizedTask};

/// The training tasks and how their batches are drawn.
#[derive(Debug, Clone)]
pub struct MultiTaskLoader {
    tasks: Vec<TokenizedTask>,
    config: PlanConfig,
}

impl MultiTaskLoader {
    /// The loader of `tasks` (task `i` is `tasks[i]`) under `config`.
    pub fn new(tasks: Vec<TokenizedTask>, config: PlanConfig) -> Result<Self> {
        config.validate()?;
        if tasks.is_empty() {
            return Err(Error::Plan("no tasks".into()));
        }
        Ok(Self { tasks, config })
    }

    /// The tasks, in index order.
    pub fn tasks(&self) -> &[TokenizedTask] {
        &self.tasks
    }

    /// The plan configuration.
    pub fn config(&self) -> &PlanConfig {
        &self.config
    }

    /// The plan of epoch `epoch` (see [`EpochPlan::new`]).
    pub fn plan(&self, epoch: u64) -> Result<EpochPlan> {
        let lengths: Vec<&[usize]> = self.tasks.iter().map(TokenizedTask::lengths).collect();
        EpochPlan::new(&lengths, &self.config, epoch)
    }

    /// The batches of epoch `epoch`, from the first.
    pub fn epoch(&self, epoch: u64) -> Result<EpochBatches<'_>> {
        self.resume(epoch, 0)
    }

    /// The batches of epoch `epoch` from step `step` on (0-based): the same batches that
    /// [`epoch`](Self::epoch) yields after its first `step`.
    pub fn resume(&self, epoch: u64, step: usize) -> Result<EpochBatches<'_>> {
        let plan = self.plan(epoch)?;
        Ok(EpochBatches {
            loader: self,
            next: step.min(plan.len()),
            plan,
        })
    }
}

/// The batches of one epoch, padded as they are reached.
#[derive(Debug, Clone)]
pub struct EpochBatches<'a> {
    loader: &'a MultiTaskLoader,
    plan: EpochPlan,
    next: usize,
}

impl EpochBatches<'_> {
    /// The plan being followed.
    pub fn plan(&self) -> &EpochPlan {
        &self.plan
    }

    /// The step of the next batch (0-based), i.e. how many batches of the epoch came before.
    pub fn step(&self) -> usize {
        self.next
    }
}

impl Iterator for EpochBatches<'_> {
    type Item = TaskBatch;

    fn next(&mut self) -> Option<TaskBatch> {
        let planned = self.plan.batches.get(self.next)?;
        self.next += 1;
        Some(self.loader.tasks[planned.task].batch(planned.task, &planned.examples))
    }

    fn nth(&mut self, n: usize) -> Option<TaskBatch> {
        self.next = self.next.saturating_add(n).min(self.plan.len());
        self.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.plan.len() - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for EpochBatches<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::{EpochMode, TaskSampler};
    use crate::tokenized::tests::{data, tokenizer};

    #[test]
    fn batches_follow_the_plan_and_resume_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let tokenizer = tokenizer(dir.path(), 16);
        let a = TokenizedTask::new(
            &data(&["the cat", "a dog", "good", "bad !", "the mat ."]),
            &tokenizer,
        )
        .unwrap();
        let b = TokenizedTask::new(
            &data(&["a", "the", "cat sat", "dog ran", "mat", "on", "!"]),
            &tokenizer,
        )
        .unwrap();
        let config = PlanConfig {
            batch_size: 2,
            sampler: TaskSampler::Proportional,
            epoch_mode: EpochMode::UntilLargestExhausted,
            seed: 5,
            ..PlanConfig::default()
        };
        let loader = MultiTaskLoader::new(vec![a, b], config).unwrap();
        let all: Vec<TaskBatch> = loader.epoch(1).unwrap().collect();
        let plan = loader.plan(1).unwrap();
        assert_eq!(all.len(), plan.len());
        for (batch, planned) in all.iter().zip(&plan.batches) {
            assert_eq!(
                (batch.task, &batch.examples),
                (planned.task, &planned.examples)
            );
            let task = &loader.tasks()[batch.task];
            assert_eq!(
                batch.tokens,
                task.batch(batch.task, &planned.examples).tokens
            );
        }
        for step in 0..=all.len() {
            let resumed: Vec<TaskBatch> = loader.resume(1, step).unwrap().collect();
            assert_eq!(resumed, all[step..], "step {step}");
        }
        let mut batches = loader.epoch(1).unwrap();
        assert_eq!(batches.nth(2).as_ref(), all.get(2));
        assert_eq!(batches.step(), 3);
        assert_eq!(batches.len(), all.len() - 3);
        assert_ne!(loader.plan(2).unwrap().batches, plan.batches);
    }
}
