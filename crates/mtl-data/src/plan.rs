//! The epoch plan: the whole sequence of `(task, example indices)` batches of one epoch, as a
//! pure function of the tasks' sizes (and token lengths, when bucketing), the [`PlanConfig`] and
//! the epoch number. A run resumes at "epoch e, step k" by making the plan of epoch e again and
//! skipping its first k batches.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::rng::{SplitMix64, derive_seed};
use crate::sampler::{EpochMode, TaskSampler};

/// How training batches are drawn. Serialises with every field; missing fields take the
/// defaults below.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlanConfig {
    /// Examples per batch. Default 32.
    pub batch_size: usize,
    /// Which task each batch comes from. Default round-robin.
    pub sampler: TaskSampler,
    /// What an epoch is. Default [`EpochMode::UntilAllExhausted`] (every example once).
    pub epoch_mode: EpochMode,
    /// Length bucketing: each pass's shuffled examples are cut into windows of
    /// `bucket_window` batches, each window is sorted by token length and cut into batches,
    /// and the pass's batches are shuffled. Batches then hold texts of similar length and need
    /// less padding. 0 or 1: off. Default 0.
    pub bucket_window: usize,
    /// Drop each pass's batches smaller than `batch_size` (at most one per pass). Default
    /// false.
    pub drop_last: bool,
    /// The seed. Epoch `e` shuffles with seed `seed + e` (wrapping). Default 0.
    pub seed: u64,
}

impl Default for PlanConfig {
    fn default() -> Self {
        Self {
            batch_size: 32,
            sampler: TaskSampler::default(),
            epoch_mode: EpochMode::default(),
            bucket_window: 0,
            drop_last: false,
            seed: 0,
        }
    }
}

impl PlanConfig {
    /// Checks the batch size, the temperature and the number of fixed steps.
    pub fn validate(&self) -> Result<()> {
        if self.batch_size == 0 {
            return Err(Error::Plan("the batch size must be at least 1".into()));
        }
        if self.epoch_mode == EpochMode::FixedSteps(0) {
            return Err(Error::Plan("an epoch of 0 fixed steps".into()));
        }
        self.sampler.validate()
    }
}

impl fmt::Display for PlanConfig {
    /// One line for the training log, e.g. `batch 32, round-robin, epoch: until every task
    /// has run out (...), bucketing off, seed 0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "batch {}{}, {}, epoch: {}, ",
            self.batch_size,
            if self.drop_last { " (drop last)" } else { "" },
            self.sampler,
            self.epoch_mode
        )?;
        if self.bucket_window > 1 {
            write!(f, "length buckets of {} batches", self.bucket_window)?;
        } else {
            f.write_str("bucketing off")?;
        }
        write!(f, ", seed {}", self.seed)
    }
}

/// One planned batch: the task and the indices of its examples.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedBatch {
    /// The task's index.
    pub task: usize,
    /// Indices into the task's examples.
    pub examples: Vec<usize>,
    /// Which pass over the task this batch belongs to: 0, or more when the task cycles.
    pub pass: usize,
}

/// The batches of one epoch, in training order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochPlan {
    /// The epoch number.
    pub epoch: u64,
    /// The batches, in order.
    pub batches: Vec<PlannedBatch>,
}

impl EpochPlan {
    /// Plans epoch `epoch` of tasks whose examples have the token lengths `task_lengths[i]`
    /// (only their number matters unless bucketing is on).
    ///
    /// Deterministic: each task's pass `p` is shuffled by a [`SplitMix64`] seeded with
    /// `derive_seed(seed + epoch, [1, task, p])`, and the task draws by one seeded with
    /// `derive_seed(seed + epoch, [0])`.
    pub fn new(task_lengths: &[&[usize]], config: &PlanConfig, epoch: u64) -> Result<Self> {
        config.validate()?;
        if task_lengths.is_empty() {
            return Err(Error::Plan("no tasks".into()));
        }
        let min_size = if config.drop_last {
            config.batch_size
        } else {
            1
        };
        for (i, lengths) in task_lengths.iter().enumerate() {
            if lengths.len() < min_size {
                return Err(Error::Plan(format!(
                    "task {i} has {} examples, fewer than one batch ({min_size})",
                    lengths.len()
                )));
            }
        }
        let base = config.seed.wrapping_add(epoch);
        let pass = |task: usize, pass: usize| {
            let mut rng = SplitMix64::new(derive_seed(base, &[1, task as u64, pass as u64]));
            pass_batches(task_lengths[task], config, &mut rng)
        };
        let mut states: Vec<TaskState> = (0..task_lengths.len())
            .map(|task| TaskState {
                pass: 0,
                batches: pass(task, 0),
                next: 0,
                completed: 0,
            })
            .collect();
        let sizes: Vec<usize> = task_lengths.iter().map(|l| l.len()).collect();
        let probabilities = config.sampler.probabilities(&sizes);
        let mut rng = SplitMix64::new(derive_seed(base, &[0]));
        let mut cursor = 0;
        let mut batches = Vec::new();
        let mode = config.epoch_mode;
        loop {
            if let EpochMode::FixedSteps(n) = mode
                && batches.len() == n
            {
                break;
            }
            let available: Vec<bool> = states
                .iter()
                .map(|s| mode.cycles() || s.next < s.batches.len())
                .collect();
            let task = match config.sampler {
                TaskSampler::RoundRobin => {
                    let k = states.len();
                    let found = (0..k).map(|d| (cursor + d) % k).find(|&i| available[i]);
                    if let Some(i) = found {
                        cursor = i + 1;
                    }
                    found
                }
                sampler => sampler.draw(&probabilities, &available, &mut rng),
            };
            let Some(task) = task else { break };
            let state = &mut states[task];
            if state.next == state.batches.len() {
                state.pass += 1;
                state.batches = pass(task, state.pass);
                state.next = 0;
            }
            batches.push(PlannedBatch {
                task,
                examples: state.batches[state.next].clone(),
                pass: state.pass,
            });
            state.next += 1;
            if state.next == state.batches.len() {
                state.completed += 1;
            }
            let done = match mode {
                EpochMode::UntilSmallestExhausted => states.iter().any(|s| s.completed > 0),
                EpochMode::UntilLargestExhausted | EpochMode::UntilAllExhausted => {
                    states.iter().all(|s| s.completed > 0)
                }
                EpochMode::FixedSteps(_) => false,
            };
            if done {
                break;
            }
        }
        Ok(Self { epoch, batches })
    }

    /// Number of batches.
    pub fn len(&self) -> usize {
        self.batches.len()
    }

    /// Whether there is no batch.
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// Number of batches of each of `tasks` tasks.
    pub fn batches_per_task(&self, tasks: usize) -> Vec<usize> {
        let mut counts = vec![0; tasks];
        for batch in &self.batches {
            counts[batch.task] += 1;
        }
        counts
    }
}

struct TaskState {
    pass: usize,
    batches: Vec<Vec<usize>>,
    next: usize,
    completed: usize,
}

/// The batches of one pass over a task: a shuffled order cut into batches (with bucketing,
/// sorted by length within windows and the batches shuffled).
fn pass_batches(lengths: &[usize], config: &PlanConfig, rng: &mut SplitMix64) -> Vec<Vec<usize>> {
    let size = config.batch_size;
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    rng.shuffle(&mut order);
    let mut batches: Vec<Vec<usize>> = if config.bucket_window > 1 {
        let mut batches = Vec::new();
        for window in order.chunks_mut(config.bucket_window * size) {
            window.sort_by_key(|&i| lengths[i]);
            batches.extend(window.chunks(size).map(<[usize]>::to_vec));
        }
        rng.shuffle(&mut batches);
        batches
    } else {
        order.chunks(size).map(<[usize]>::to_vec).collect()
    };
    if config.drop_last {
        batches.retain(|b| b.len() == size);
    }
    batches
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(sampler: TaskSampler, epoch_mode: EpochMode, batch_size: usize) -> PlanConfig {
        PlanConfig {
            batch_size,
            sampler,
            epoch_mode,
            seed: 17,
            ..PlanConfig::default()
        }
    }

    fn plan(sizes: &[usize], config: &PlanConfig, epoch: u64) -> EpochPlan {
        let lengths: Vec<Vec<usize>> = sizes
            .iter()
            .map(|&n| (0..n).map(|i| i % 13).collect())
            .collect();
        let refs: Vec<&[usize]> = lengths.iter().map(Vec::as_slice).collect();
        EpochPlan::new(&refs, config, epoch).unwrap()
    }

    fn tasks(plan: &EpochPlan) -> Vec<usize> {
        plan.batches.iter().map(|b| b.task).collect()
    }

    /// How often each (task, example) occurs in the plan.
    fn occurrences(plan: &EpochPlan) -> HashMap<(usize, usize), usize> {
        let mut seen = HashMap::new();
        for batch in &plan.batches {
            for &e in &batch.examples {
                *seen.entry((batch.task, e)).or_default() += 1;
            }
        }
        seen
    }

    const ROUND_ROBIN: TaskSampler = TaskSampler::RoundRobin;

    #[test]
    fn round_robin_sequences_per_epoch_mode() {
        // Task 0: 6 examples = 3 batches of 2; task 1: 9 examples = 5 batches (the last of 1).
        let sizes = [6, 9];
        let seq = |mode| tasks(&plan(&sizes, &config(ROUND_ROBIN, mode, 2), 0));
        assert_eq!(seq(EpochMode::UntilSmallestExhausted), [0, 1, 0, 1, 0]);
        assert_eq!(seq(EpochMode::UntilAllExhausted), [0, 1, 0, 1, 0, 1, 1, 1]);
        assert_eq!(
            seq(EpochMode::UntilLargestExhausted),
            [0, 1, 0, 1, 0, 1, 0, 1, 0, 1]
        );
        assert_eq!(seq(EpochMode::FixedSteps(7)), [0, 1, 0, 1, 0, 1, 0]);
        let three = tasks(&plan(
            &[2, 6, 4],
            &config(ROUND_ROBIN, EpochMode::UntilAllExhausted, 2),
            0,
        ));
        assert_eq!(three, [0, 1, 2, 1, 2, 1]);
        let largest = plan(
            &sizes,
            &config(ROUND_ROBIN, EpochMode::UntilLargestExhausted, 2),
            0,
        );
        let passes: Vec<usize> = largest
            .batches
            .iter()
            .filter(|b| b.task == 0)
            .map(|b| b.pass)
            .collect();
        assert_eq!(passes, [0, 0, 0, 1, 1]);
    }

    #[test]
    fn every_example_once_when_all_tasks_run_out() {
        let sizes = [7, 23, 50];
        for sampler in [
            ROUND_ROBIN,
            TaskSampler::Proportional,
            TaskSampler::Temperature { t: 3.0 },
        ] {
            for bucket_window in [0, 3] {
                let config = PlanConfig {
                    bucket_window,
                    ..config(sampler, EpochMode::UntilAllExhausted, 4)
                };
                let plan = plan(&sizes, &config, 2);
                let seen = occurrences(&plan);
                assert_eq!(seen.len(), 80, "{sampler}");
                assert!(seen.values().all(|&n| n == 1), "{sampler}");
                assert!(
                    plan.batches
                        .iter()
                        .all(|b| !b.examples.is_empty() && b.examples.len() <= 4)
                );
            }
        }
        // drop_last: only full batches, each example at most once.
        let config = PlanConfig {
            drop_last: true,
            ..config(ROUND_ROBIN, EpochMode::UntilAllExhausted, 4)
        };
        let plan = plan(&sizes, &config, 0);
        assert!(plan.batches.iter().all(|b| b.examples.len() == 4));
        assert_eq!(occurrences(&plan).len(), 4 + 20 + 48);
    }

    #[test]
    fn no_example_repeats_unless_tasks_cycle() {
        for sampler in [
            ROUND_ROBIN,
            TaskSampler::Proportional,
            TaskSampler::Temperature { t: 2.0 },
        ] {
            let plan = plan(
                &[10, 40, 25],
                &config(sampler, EpochMode::UntilSmallestExhausted, 3),
                1,
            );
            assert!(occurrences(&plan).values().all(|&n| n == 1), "{sampler}");
            // Some task has run out: all of its examples were seen.
            let seen = occurrences(&plan);
            let full = [10, 40, 25]
                .iter()
                .enumerate()
                .any(|(t, &n)| (0..n).all(|e| seen.contains_key(&(t, e))));
            assert!(full, "{sampler}");
        }
        // Cycling: the small task repeats, but each pass holds each example once, and the
        // second pass is shuffled differently.
        let plan = plan(
            &[6, 30],
            &config(ROUND_ROBIN, EpochMode::UntilLargestExhausted, 2),
            0,
        );
        let seen = occurrences(&plan);
        assert!((0..30).all(|e| seen[&(1, e)] == 1));
        assert!((0..6).all(|e| seen[&(0, e)] >= 2));
        let pass = |p: usize| -> Vec<usize> {
            plan.batches
                .iter()
                .filter(|b| b.task == 0 && b.pass == p)
                .flat_map(|b| b.examples.clone())
                .collect()
        };
        let (first, second) = (pass(0), pass(1));
        assert_ne!(first, second);
        let mut sorted = second.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..6).collect::<Vec<_>>());
    }

    #[test]
    fn proportional_draws_match_task_sizes() {
        // 20,000 draws; the standard error of a share is at most 0.0036, the tolerance 0.015.
        let sizes = [1000, 3000, 16000];
        let check = |sampler: TaskSampler, expected: [f64; 3]| {
            let plan = plan(
                &sizes,
                &config(sampler, EpochMode::FixedSteps(20_000), 1),
                0,
            );
            let counts = plan.batches_per_task(3);
            for (count, p) in counts.iter().zip(expected) {
                let share = *count as f64 / 20_000.0;
                assert!(
                    (share - p).abs() < 0.015,
                    "{sampler}: {counts:?} vs {expected:?}"
                );
            }
        };
        check(TaskSampler::Proportional, [0.05, 0.15, 0.8]);
        // t = 2: weights sqrt(n) = 31.6, 54.8, 126.5.
        let roots = sizes.map(|n| (n as f64).sqrt());
        let total: f64 = roots.iter().sum();
        check(
            TaskSampler::Temperature { t: 2.0 },
            roots.map(|r| r / total),
        );
        check(TaskSampler::Temperature { t: 1e6 }, [1.0 / 3.0; 3]);
    }

    #[test]
    fn plans_depend_only_on_seed_and_epoch() {
        let sizes = [30, 50];
        for sampler in [ROUND_ROBIN, TaskSampler::Proportional] {
            let c = config(sampler, EpochMode::UntilAllExhausted, 4);
            assert_eq!(plan(&sizes, &c, 3), plan(&sizes, &c, 3));
            assert_ne!(plan(&sizes, &c, 3).batches, plan(&sizes, &c, 4).batches);
            // Epoch e reseeds with seed + e.
            let next_seed = PlanConfig {
                seed: c.seed + 1,
                ..c.clone()
            };
            assert_eq!(
                plan(&sizes, &c, 4).batches,
                plan(&sizes, &next_seed, 3).batches
            );
        }
    }

    #[test]
    fn bucketing_groups_similar_lengths() {
        let lengths: Vec<usize> = (0..400).map(|i| (i * 37) % 101).collect();
        let padded = |bucket_window| {
            let config = PlanConfig {
                bucket_window,
                ..config(ROUND_ROBIN, EpochMode::UntilAllExhausted, 8)
            };
            let plan = EpochPlan::new(&[&lengths], &config, 0).unwrap();
            plan.batches
                .iter()
                .map(|b| b.examples.len() * b.examples.iter().map(|&i| lengths[i]).max().unwrap())
                .sum::<usize>()
        };
        let (off, on) = (padded(0), padded(10));
        assert!(
            on * 10 < off * 7,
            "bucketing should cut padding: {on} vs {off}"
        );
    }

    #[test]
    fn invalid_plans_say_why() {
        let err = |sizes: &[usize], config: PlanConfig| {
            let lengths: Vec<Vec<usize>> = sizes.iter().map(|&n| vec![1; n]).collect();
            let refs: Vec<&[usize]> = lengths.iter().map(Vec::as_slice).collect();
            EpochPlan::new(&refs, &config, 0).unwrap_err().to_string()
        };
        assert!(
            err(
                &[3],
                PlanConfig {
                    batch_size: 0,
                    ..PlanConfig::default()
                }
            )
            .contains("batch size")
        );
        assert!(err(&[3, 0], PlanConfig::default()).contains("task 1 has 0 examples"));
        assert!(err(&[], PlanConfig::default()).contains("no tasks"));
        let drop = PlanConfig {
            drop_last: true,
            batch_size: 4,
            ..PlanConfig::default()
        };
        assert!(err(&[3], drop).contains("fewer than one batch"));
        let zero = PlanConfig {
            epoch_mode: EpochMode::FixedSteps(0),
            ..PlanConfig::default()
        };
        assert!(err(&[3], zero).contains("0 fixed steps"));
    }

    #[test]
    fn the_config_is_loggable_and_round_trips() {
        let config = PlanConfig {
            bucket_window: 50,
            ..PlanConfig::default()
        };
        assert_eq!(
            config.to_string(),
            "batch 32, round-robin, epoch: until every task has run out (each example once; \
             exhausted tasks skipped), length buckets of 50 batches, seed 0"
        );
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(serde_json::from_str::<PlanConfig>(&json).unwrap(), config);
        assert_eq!(
            serde_json::from_str::<PlanConfig>("{}").unwrap(),
            PlanConfig::default()
        );
    }
}
