//! Which task each training batch comes from, and what an epoch is.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::rng::SplitMix64;

/// How the task of each batch is chosen (one task per batch).
///
/// `n_i` below is the number of examples of task `i` in the split being planned (not the number
/// of batches, which would make the weights depend on the batch size and on `drop_last`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TaskSampler {
    /// Tasks in turn: A, B, A, B, ... A task that has no batch left this epoch is skipped
    /// (under [`EpochMode::UntilAllExhausted`]); under the other modes it starts a new pass.
    #[default]
    RoundRobin,
    /// Task `i` drawn with probability `p_i = n_i / Σ n_j`.
    Proportional,
    /// Task `i` drawn with probability `p_i ∝ n_i^(1/t)`: `t = 1` is proportional, a large `t`
    /// tends to uniform. `t` must be positive and finite.
    Temperature {
        /// The temperature.
        t: f64,
    },
}

impl TaskSampler {
    /// The probability of drawing each task, given their sizes (`n_i`); round-robin gives each
    /// task the same share. Tasks of size 0 get 0.
    pub fn probabilities(&self, sizes: &[usize]) -> Vec<f64> {
        let raw: Vec<f64> = sizes
            .iter()
            .map(|&n| match (*self, n) {
                (_, 0) => 0.0,
                (Self::RoundRobin, _) => 1.0,
                (Self::Proportional, n) => n as f64,
                (Self::Temperature { t }, n) => (n as f64).powf(1.0 / t),
            })
            .collect();
        let total: f64 = raw.iter().sum();
        raw.iter()
            .map(|w| if total > 0.0 { w / total } else { 0.0 })
            .collect()
    }

    /// Checks the temperature.
    pub fn validate(&self) -> Result<()> {
        match *self {
            Self::Temperature { t } if !(t.is_finite() && t > 0.0) => Err(Error::Plan(format!(
                "the sampling temperature must be positive and finite, not {t}"
            ))),
            _ => Ok(()),
        }
    }

    /// Draws a task among those with `available[i]`, with the weights of
    /// [`probabilities`](Self::probabilities) restricted to them. `None` when none is available.
    /// (Not used for round-robin, which needs no randomness.)
    pub(crate) fn draw(
        &self,
        probabilities: &[f64],
        available: &[bool],
        rng: &mut SplitMix64,
    ) -> Option<usize> {
        let weight = |i: usize| if available[i] { probabilities[i] } else { 0.0 };
        let total: f64 = (0..probabilities.len()).map(weight).sum();
        if total <= 0.0 {
            return None;
        }
        let mut u = rng.next_f64() * total;
        let mut last = None;
        for i in 0..probabilities.len() {
            let w = weight(i);
            if w > 0.0 {
                if u < w {
                    return Some(i);
                }
                u -= w;
                last = Some(i);
            }
        }
        last // rounding left u just above the total
    }
}

impl TaskSampler {
    /// The sampler as a setting reads it: `round-robin`, `proportional` or `temperature:T`
    /// (what [`FromStr`](std::str::FromStr) parses back).
    pub fn setting(&self) -> String {
        match self {
            Self::RoundRobin => "round-robin".into(),
            Self::Proportional => "proportional".into(),
            Self::Temperature { t } => format!("temperature:{t}"),
        }
    }
}

impl std::str::FromStr for TaskSampler {
    type Err = String;

    /// Parses `round-robin`, `proportional` or `temperature:T` (the temperature is checked by
    /// [`TaskSampler::validate`]).
    fn from_str(text: &str) -> Result<Self, String> {
        match text.split_once(':') {
            None if text == "round-robin" => Ok(Self::RoundRobin),
            None if text == "proportional" => Ok(Self::Proportional),
            Some(("temperature", t)) => t
                .parse()
                .map(|t| Self::Temperature { t })
                .map_err(|_| format!("sampler {text:?}: bad temperature")),
            _ => Err(format!(
                "unknown sampler {text:?} (expected round-robin, proportional or temperature:T)"
            )),
        }
    }
}

impl fmt::Display for TaskSampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RoundRobin => f.write_str("round-robin"),
            Self::Proportional => f.write_str("proportional to examples (p_i ∝ n_i)"),
            Self::Temperature { t } => write!(f, "temperature {t} (p_i ∝ n_i^(1/{t}))"),
        }
    }
}

/// What one epoch is. Every epoch starts each task at a fresh pass over its examples,
/// shuffled with the epoch's seed; "a task runs out" means its current pass has no batch left.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EpochMode {
    /// Ends as soon as one task has used all its batches (with round-robin and sizes A < B:
    /// A, B, A, B, ..., A). No example is repeated; the larger tasks are only partly seen.
    UntilSmallestExhausted,
    /// Ends as soon as every task has used all its batches at least once: smaller tasks
    /// cycle, each new pass reshuffled (a different order from the pass before).
    UntilLargestExhausted,
    /// Ends when every task has used all its batches exactly once: a task that has run out
    /// is skipped. Every example is seen exactly once per epoch (with `drop_last` off).
    #[default]
    UntilAllExhausted,
    /// Exactly this many batches; a task that runs out starts a new pass, reshuffled.
    FixedSteps(usize),
}

impl EpochMode {
    /// Whether a task that has run out starts a new pass (rather than being skipped or ending
    /// the epoch).
    pub fn cycles(&self) -> bool {
        matches!(self, Self::UntilLargestExhausted | Self::FixedSteps(_))
    }
}

impl EpochMode {
    /// The mode as a setting reads it: `smallest`, `largest`, `all` or `steps:N` (what
    /// [`FromStr`](std::str::FromStr) parses back).
    pub fn setting(&self) -> String {
        match self {
            Self::UntilSmallestExhausted => "smallest".into(),
            Self::UntilLargestExhausted => "largest".into(),
            Self::UntilAllExhausted => "all".into(),
            Self::FixedSteps(n) => format!("steps:{n}"),
        }
    }
}

impl std::str::FromStr for EpochMode {
    type Err = String;

    /// Parses `smallest`, `largest`, `all` or `steps:N`.
    fn from_str(text: &str) -> Result<Self, String> {
        match text.split_once(':') {
            None if text == "smallest" => Ok(Self::UntilSmallestExhausted),
            None if text == "largest" => Ok(Self::UntilLargestExhausted),
            None if text == "all" => Ok(Self::UntilAllExhausted),
            Some(("steps", n)) => n
                .parse()
                .map(Self::FixedSteps)
                .map_err(|_| format!("epoch {text:?}: bad step count")),
            _ => Err(format!(
                "unknown epoch {text:?} (expected smallest, largest, all or steps:N)"
            )),
        }
    }
}

impl fmt::Display for EpochMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UntilSmallestExhausted => {
                f.write_str("until the first task runs out (no example repeated)")
            }
            Self::UntilLargestExhausted => {
                f.write_str("until the largest task runs out (smaller tasks cycle, reshuffled)")
            }
            Self::UntilAllExhausted => f.write_str(
                "until every task has run out (each example once; exhausted tasks skipped)",
            ),
            Self::FixedSteps(n) => write!(f, "{n} steps (tasks cycle, reshuffled)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probabilities_follow_the_formulas() {
        let sizes = [100, 400, 0];
        let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12);
        assert!(close(
            &TaskSampler::RoundRobin.probabilities(&sizes),
            &[0.5, 0.5, 0.0]
        ));
        assert!(close(
            &TaskSampler::Proportional.probabilities(&sizes),
            &[0.2, 0.8, 0.0]
        ));
        let t2 = TaskSampler::Temperature { t: 2.0 }.probabilities(&sizes);
        assert!(close(&t2, &[10.0 / 30.0, 20.0 / 30.0, 0.0]), "{t2:?}");
        let t1 = TaskSampler::Temperature { t: 1.0 }.probabilities(&sizes);
        assert!(close(&t1, &[0.2, 0.8, 0.0]));
        let hot = TaskSampler::Temperature { t: 1e9 }.probabilities(&sizes);
        assert!(
            close(&hot, &[0.5, 0.5, 0.0]) || (hot[0] - 0.5).abs() < 1e-6,
            "{hot:?}"
        );
    }

    #[test]
    fn bad_temperatures_are_refused() {
        for t in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(TaskSampler::Temperature { t }.validate().is_err(), "{t}");
        }
        TaskSampler::Temperature { t: 0.5 }.validate().unwrap();
    }

    #[test]
    fn settings_parse_back_to_the_same_value() {
        for text in [
            "round-robin",
            "proportional",
            "temperature:2",
            "temperature:0.5",
        ] {
            let sampler: TaskSampler = text.parse().unwrap();
            assert_eq!(sampler.setting(), text);
        }
        assert_eq!(
            "temperature:2".parse::<TaskSampler>(),
            Ok(TaskSampler::Temperature { t: 2.0 })
        );
        for text in ["smallest", "largest", "all", "steps:7"] {
            let mode: EpochMode = text.parse().unwrap();
            assert_eq!(mode.setting(), text);
        }
        assert_eq!("steps:7".parse::<EpochMode>(), Ok(EpochMode::FixedSteps(7)));
        for bad in ["random", "temperature:x", "temperature", ""] {
            assert!(bad.parse::<TaskSampler>().is_err(), "{bad}");
        }
        for bad in ["forever", "steps:x", "steps:-1", ""] {
            assert!(bad.parse::<EpochMode>().is_err(), "{bad}");
        }
    }

    #[test]
    fn configs_read_and_print_as_documented() {
        let sampler: TaskSampler =
            serde_json::from_str(r#"{"kind": "temperature", "t": 2.0}"#).unwrap();
        assert_eq!(sampler, TaskSampler::Temperature { t: 2.0 });
        assert_eq!(sampler.to_string(), "temperature 2 (p_i ∝ n_i^(1/2))");
        let mode: EpochMode = serde_json::from_str(r#"{"fixed_steps": 10}"#).unwrap();
        assert_eq!(mode, EpochMode::FixedSteps(10));
        let mode: EpochMode = serde_json::from_str(r#""until_largest_exhausted""#).unwrap();
        assert!(
            mode.to_string()
                .starts_with("until the largest task runs out")
        );
    }
}
