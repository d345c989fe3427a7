//! Classification metrics: confusion matrix, accuracy, per-class precision/recall/F1 and
//! macro-F1, computed as scikit-learn computes them.

use serde::{Deserialize, Serialize};

/// Counts of (true label, predicted label) pairs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfusionMatrix {
    /// `counts[true][predicted]`.
    pub counts: Vec<Vec<u64>>,
}

/// Precision, recall and F1 of one class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassScores {
    /// The label.
    pub label: String,
    /// Of the texts predicted as this label, the share that have it (0 when none predicted).
    pub precision: f64,
    /// Of the texts with this label, the share predicted as it (0 when none have it).
    pub recall: f64,
    /// Harmonic mean of precision and recall (0 when both are 0).
    pub f1: f64,
    /// Number of texts with this label.
    pub support: u64,
}

impl ConfusionMatrix {
    /// An empty matrix over `labels` classes.
    pub fn new(labels: usize) -> Self {
        Self {
            counts: vec![vec![0; labels]; labels],
        }
    }

    /// Counts one prediction.
    pub fn add(&mut self, truth: usize, predicted: usize) {
        self.counts[truth][predicted] += 1;
    }

    /// Number of predictions counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    /// Share of correct predictions (0 when empty).
    pub fn accuracy(&self) -> f64 {
        let correct: u64 = (0..self.counts.len()).map(|i| self.counts[i][i]).sum();
        ratio(correct, self.total())
    }

    /// Precision, recall, F1 and support of every class, in label order.
    pub fn per_class(&self, labels: &[String]) -> Vec<ClassScores> {
        (0..self.counts.len())
            .map(|c| {
                let tp = self.counts[c][c];
                let predicted: u64 = self.counts.iter().map(|row| row[c]).sum();
                let support: u64 = self.counts[c].iter().sum();
                let (precision, recall) = (ratio(tp, predicted), ratio(tp, support));
                let f1 = if precision + recall > 0.0 {
                    2.0 * precision * recall / (precision + recall)
                } else {
                    0.0
                };
                ClassScores {
                    label: labels[c].clone(),
                    precision,
                    recall,
                    f1,
                    support,
                }
            })
            .collect()
    }

    /// Unweighted mean F1 over the classes that occur as a true or a predicted label
    /// (scikit-learn's `f1_score(average="macro")`).
    pub fn macro_f1(&self) -> f64 {
        let n = self.counts.len();
        let labels: Vec<String> = (0..n).map(|i| i.to_string()).collect();
        let scores = self.per_class(&labels);
        let present: Vec<f64> = (0..n)
            .filter(|&c| {
                let predicted: u64 = self.counts.iter().map(|row| row[c]).sum();
                scores[c].support > 0 || predicted > 0
            })
            .map(|c| scores[c].f1)
            .collect();
        if present.is_empty() {
            0.0
        } else {
            present.iter().sum::<f64>() / present.len() as f64
        }
    }
}

fn ratio(numerator: u64, denominator: u64) -> f64 {
    if denominator == 0 {
        0.0
    } else {
        numerator as f64 / denominator as f64
    }
}

/// One task's evaluation on one split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskMetrics {
    /// The task.
    pub task: String,
    /// Number of examples.
    pub examples: u64,
    /// Mean cross-entropy (natural log).
    pub loss: f64,
    /// Share of correct predictions.
    pub accuracy: f64,
    /// Macro-averaged F1: the unweighted mean F1 over the classes that occur as a true or a
    /// predicted label (scikit-learn's `f1_score(average="macro")`).
    pub macro_f1: f64,
    /// Per-class precision, recall, F1 and support.
    pub per_class: Vec<ClassScores>,
    /// The labels, in the order of the confusion matrix's rows and columns.
    pub labels: Vec<String>,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<u64>>,
}

impl TaskMetrics {
    /// The metrics of a finished confusion matrix and the summed loss.
    pub fn new(task: &str, labels: &[String], confusion: ConfusionMatrix, loss_sum: f64) -> Self {
        let examples = confusion.total();
        Self {
            task: task.to_owned(),
            examples,
            loss: if examples > 0 {
                loss_sum / examples as f64
            } else {
                0.0
            },
            accuracy: confusion.accuracy(),
            macro_f1: confusion.macro_f1(),
            per_class: confusion.per_class(labels),
            labels: labels.to_vec(),
            confusion: confusion.counts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(pairs: &[(usize, usize)], n: usize) -> ConfusionMatrix {
        let mut m = ConfusionMatrix::new(n);
        for &(t, p) in pairs {
            m.add(t, p);
        }
        m
    }

    #[test]
    fn matches_scikit_learn() {
        // y_true = [0, 0, 1, 1, 2, 2], y_pred = [0, 1, 1, 1, 0, 2]:
        // sklearn: accuracy 0.6667, f1 per class [0.5, 0.8, 0.6667], macro 0.65556.
        let m = matrix(&[(0, 0), (0, 1), (1, 1), (1, 1), (2, 0), (2, 2)], 3);
        assert!((m.accuracy() - 4.0 / 6.0).abs() < 1e-12);
        let labels = ["a".into(), "b".into(), "c".into()];
        let f1: Vec<f64> = m.per_class(&labels).iter().map(|s| s.f1).collect();
        for (got, want) in f1.iter().zip([0.5, 0.8, 2.0 / 3.0]) {
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
        assert!((m.macro_f1() - (0.5 + 0.8 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
    }

    #[test]
    fn absent_classes_do_not_count_in_macro_f1() {
        // A 3-class head on 2-class data that never predicts the third class.
        let m = matrix(&[(0, 0), (2, 2), (2, 0)], 3);
        let labels: Vec<String> = ["neg", "neu", "pos"].map(String::from).to_vec();
        let scores = m.per_class(&labels);
        assert_eq!(scores[1].support, 0);
        // Classes 0 and 2 only: F1 0.6667 and 0.6667.
        assert!((m.macro_f1() - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn empty_matrix_is_all_zero() {
        let m = ConfusionMatrix::new(2);
        assert_eq!(m.accuracy(), 0.0);
        assert_eq!(m.macro_f1(), 0.0);
        let metrics = TaskMetrics::new("t", &["a".into(), "b".into()], m, 0.0);
        assert_eq!(metrics.loss, 0.0);
    }
}
