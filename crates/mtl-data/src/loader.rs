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
    use mtl_bert::TokenBatch;

    use super::*;
    use crate::sampler::{EpochMode, TaskSampler};
    use crate::tokenized::tests::{data, tokenizer};

    /// Task 0's texts and their token ids, spelled out by hand from the test vocabulary
    /// (`[PAD]` 0, `[CLS]` 2, `[SEP]` 3, the 5, cat 6, sat 7, on 8, mat 9, a 10, dog 11, ran 12,
    /// `.` 13, `!` 14, good 15, bad 16).
    const A: [(&str, &[i64]); 5] = [
        ("the cat", &[2, 5, 6, 3]),
        ("a dog", &[2, 10, 11, 3]),
        ("good", &[2, 15, 3]),
        ("bad !", &[2, 16, 14, 3]),
        ("the mat .", &[2, 5, 9, 13, 3]),
    ];

    /// Task 1's texts and token ids.
    const B: [(&str, &[i64]); 7] = [
        ("a", &[2, 10, 3]),
        ("the", &[2, 5, 3]),
        ("cat sat", &[2, 6, 7, 3]),
        ("dog ran", &[2, 11, 12, 3]),
        ("mat", &[2, 9, 3]),
        ("on", &[2, 8, 3]),
        ("!", &[2, 14, 3]),
    ];

    /// The padded batch of `examples` built from the hand-written ids: padded with 0 on the
    /// right to the longest, token types 0, mask 1 on tokens.
    fn expected_tokens(task: &[(&str, &[i64])], examples: &[usize]) -> TokenBatch {
        let seq_len = examples.iter().map(|&i| task[i].1.len()).max().unwrap();
        let mut tokens = TokenBatch {
            input_ids: Vec::new(),
            token_type_ids: vec![0; examples.len() * seq_len],
            attention_mask: Vec::new(),
            batch_size: examples.len(),
            seq_len,
        };
        for &i in examples {
            let ids = task[i].1;
            tokens.input_ids.extend(ids);
            tokens
                .input_ids
                .resize(tokens.input_ids.len() + seq_len - ids.len(), 0);
            for position in 0..seq_len {
                tokens.attention_mask.push(i64::from(position < ids.len()));
            }
        }
        tokens
    }

    #[test]
    fn batches_follow_the_plan_and_resume_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let tokenizer = tokenizer(dir.path(), 16);
        let a = TokenizedTask::new(&data(&A.map(|(text, _)| text)), &tokenizer).unwrap();
        let b = TokenizedTask::new(&data(&B.map(|(text, _)| text)), &tokenizer).unwrap();
        let config = PlanConfig {
            batch_size: 2,
            sampler: TaskSampler::Proportional,
            epoch_mode: EpochMode::UntilLargestExhausted,
            seed: 5,
            ..PlanConfig::default()
        };
        let loader = MultiTaskLoader::new(vec![a, b], config).unwrap();
        let all: Vec<TaskBatch> = loader.epoch(1).unwrap().collect();

        // The plan of epoch 1 under seed 5, pinned: it is what a run resumed at any step must
        // redo. Tasks drawn 5:7; every example once, as task 0 (5 examples) did not run out
        // before task 1 (7, the largest) did.
        let expected: [(usize, &[usize]); 7] = [
            (1, &[5, 3]),
            (1, &[6, 0]),
            (1, &[4, 1]),
            (0, &[3, 2]),
            (0, &[0, 1]),
            (1, &[2]),
            (0, &[4]),
        ];
        let got: Vec<(usize, &[usize])> = all
            .iter()
            .map(|b| (b.task, b.examples.as_slice()))
            .collect();
        assert_eq!(got, expected);
        let mut task1: Vec<usize> = all
            .iter()
            .filter(|b| b.task == 1)
            .flat_map(|b| b.examples.iter().copied())
            .collect();
        task1.sort_unstable();
        assert_eq!(task1, [0, 1, 2, 3, 4, 5, 6], "the largest task once");
        // The loader follows its own plan.
        let plan = loader.plan(1).unwrap();
        let planned: Vec<(usize, &[usize])> = plan
            .batches
            .iter()
            .map(|b| (b.task, b.examples.as_slice()))
            .collect();
        assert_eq!(planned, expected);

        // Every batch padded from the hand-written ids; labels are the examples' (index % 2).
        for batch in &all {
            let ids: &[(&str, &[i64])] = if batch.task == 0 { &A } else { &B };
            assert_eq!(
                batch.tokens,
                expected_tokens(ids, &batch.examples),
                "{:?}",
                (batch.task, &batch.examples)
            );
            let labels: Vec<i64> = batch.examples.iter().map(|&i| i as i64 % 2).collect();
            assert_eq!(batch.labels, labels);
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
