//! Removing duplicate texts and splitting stratified by label, deterministically.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::sources::Example;

/// The three splits and their shares: train 80 %, valid 10 %, test 10 % of each label.
pub(crate) const SPLITS: [&str; 3] = ["train", "valid", "test"];

/// What [`dedup`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Duplicates {
    /// Examples removed because an earlier example has exactly the same text.
    pub removed: usize,
    /// Of those, the ones whose label differs from the kept example's.
    pub label_conflicts: usize,
}

/// Keeps the first example of each distinct text (exact string equality) in source order, so
/// no text can land in two splits. A later duplicate is dropped whatever its label; a
/// different label is counted as a conflict.
pub(crate) fn dedup(examples: Vec<Example>) -> (Vec<Example>, Duplicates) {
    let mut first_label: HashMap<String, &'static str> = HashMap::new();
    let mut counts = Duplicates::default();
    let mut kept = Vec::with_capacity(examples.len());
    for example in examples {
        if let Some(label) = first_label.get(&example.text) {
            counts.removed += 1;
            if *label != example.label {
                counts.label_conflicts += 1;
            }
            continue;
        }
        first_label.insert(example.text.clone(), example.label);
        kept.push(example);
    }
    (kept, counts)
}

/// The sort key of an example in the split: `sha256(seed as 8 little-endian bytes ‖ id)`.
/// Independent of any random number generator's version.
pub(crate) fn split_key(seed: u64, id: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(seed.to_le_bytes());
    hasher.update(id.as_bytes());
    hasher.finalize().into()
}

/// Splits `examples` 80/10/10 within each label: a label's `n` examples are ordered by
/// [`split_key`]; the first `n - 2 * round(n / 10)` go to train, the next `round(n / 10)` to
/// valid, the rest to test (`round` halves up). Each split keeps source order.
pub(crate) fn split(examples: Vec<Example>, seed: u64) -> [Vec<Example>; 3] {
    let mut by_label: HashMap<&'static str, Vec<usize>> = HashMap::new();
    for (i, example) in examples.iter().enumerate() {
        by_label.entry(example.label).or_default().push(i);
    }
    let mut split_of = vec![0usize; examples.len()];
    for indices in by_label.values_mut() {
        indices.sort_by_cached_key(|&i| split_key(seed, &examples[i].id));
        let tenth = (indices.len() + 5) / 10;
        let train = indices.len() - 2 * tenth;
        for (rank, &i) in indices.iter().enumerate() {
            split_of[i] = if rank < train {
                0
            } else if rank < train + tenth {
                1
            } else {
                2
            };
        }
    }
    let mut splits: [Vec<Example>; 3] = Default::default();
    for (example, s) in examples.into_iter().zip(split_of) {
        splits[s].push(example);
    }
    splits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(id: usize, text: &str, label: &'static str) -> Example {
        Example {
            id: format!("x/row-{id}"),
            text: text.into(),
            label,
        }
    }

    #[test]
    fn dedup_keeps_the_first_and_counts_conflicts() {
        let examples = vec![
            example(1, "a", "pos"),
            example(2, "b", "neg"),
            example(3, "a", "pos"),
            example(4, "a", "neg"),
            example(5, "a ", "neg"),
        ];
        let (kept, counts) = dedup(examples);
        let ids: Vec<&str> = kept.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["x/row-1", "x/row-2", "x/row-5"]);
        assert_eq!(
            counts,
            Duplicates {
                removed: 2,
                label_conflicts: 1
            }
        );
    }

    #[test]
    fn splits_are_stratified_deterministic_and_disjoint() {
        let mut examples: Vec<Example> = (0..95).map(|i| example(i, &i.to_string(), "a")).collect();
        examples.extend((95..120).map(|i| example(i, &i.to_string(), "b")));
        let [train, valid, test] = split(examples.clone(), 7);
        let count = |s: &[Example], l: &str| s.iter().filter(|e| e.label == l).count();
        // 95 -> round(9.5) = 10 each for valid and test; 25 -> round(2.5) = 3.
        assert_eq!(
            (count(&train, "a"), count(&valid, "a"), count(&test, "a")),
            (75, 10, 10)
        );
        assert_eq!(
            (count(&train, "b"), count(&valid, "b"), count(&test, "b")),
            (19, 3, 3)
        );
        assert_eq!(split(examples.clone(), 7), [train.clone(), valid, test]);
        assert_ne!(split(examples.clone(), 8)[0], train);
        // Source order within a split.
        assert!(
            train
                .windows(2)
                .all(|w| w[0].text.parse::<u32>().unwrap() < w[1].text.parse::<u32>().unwrap())
        );
    }
}
