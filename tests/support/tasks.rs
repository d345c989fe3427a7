//! Small generated classification data sets for the training tests, included with
//! `#[path = ".../tests/support/tasks.rs"] mod tasks;` by mtl-train's library tests and
//! the `mtl` binary's tests (one home for this setup).
#![allow(dead_code)]

use std::path::Path;

use mtl_data::SplitMix64;

/// Writes a small two-class data set (`train.jsonl` with `train` examples, `valid.jsonl` and
/// `test.jsonl` with a quarter as many) whose label is signalled by some of its words.
pub fn write_task(dir: &Path, classes: &[(&str, &[&str])], train: usize, seed: u64) {
    let filler = [
        "the", "a", "of", "to", "and", "in", "is", "it", "on", "that", "this", "with",
    ];
    let mut rng = SplitMix64::new(seed);
    std::fs::create_dir_all(dir).unwrap();
    for (split, n) in [("train", train), ("valid", train / 4), ("test", train / 4)] {
        let mut lines = String::new();
        for i in 0..n {
            let (label, cues) = classes[rng.below(classes.len() as u64) as usize];
            let mut words: Vec<&str> = (0..1 + rng.below(3))
                .map(|_| cues[rng.below(cues.len() as u64) as usize])
                .collect();
            words.extend(
                (0..1 + rng.below(8)).map(|_| filler[rng.below(filler.len() as u64) as usize]),
            );
            rng.shuffle(&mut words);
            let line = serde_json::json!({"id": format!("{split}-{i}"), "text": words.join(" "), "label": label});
            lines += &format!("{line}\n");
        }
        std::fs::write(dir.join(format!("{split}.jsonl")), lines).unwrap();
    }
}

/// Two tasks in a temporary directory: topic (sport/tech, 96 training examples) and
/// sentiment (160); with each task as `NAME=DIR`.
pub fn data() -> (tempfile::TempDir, [String; 2]) {
    let dir = tempfile::tempdir().unwrap();
    write_task(
        &dir.path().join("topic"),
        &[
            ("sport", &["team", "win", "game", "play"]),
            ("tech", &["phone", "new", "tech", "market"]),
        ],
        96,
        1,
    );
    write_task(
        &dir.path().join("sentiment"),
        &[
            ("negative", &["bad", "terrible", "lose"]),
            ("positive", &["good", "great", "win"]),
        ],
        160,
        2,
    );
    let task = |name: &str| format!("{name}={}", dir.path().join(name).display());
    let tasks = [task("topic"), task("sentiment")];
    (dir, tasks)
}
