//! `mtl train --init`: adding a task to a trained model. Heads of tasks the new run does not
//! train are carried over bit for bit; with the encoder frozen their predictions are the same;
//! a task whose labels differ from the saved model's is refused.

use crate::common;

use std::path::Path;

use common::{assert_fails_with, assert_succeeded, max_abs_diff, mtl, tiny_dir};
use mtl_bert::Backend;
use mtl_bert::collect_tensors;
use mtl_data::SplitMix64;
use mtl_model::MultiTaskClassifier;

/// A directory of train/valid JSONL splits whose label is signalled by cue words.
fn write_task(dir: &Path, classes: &[(&str, &[&str])], seed: u64) {
    let filler = ["the", "a", "of", "to", "and", "in", "is", "it"];
    let mut rng = SplitMix64::new(seed);
    std::fs::create_dir_all(dir).unwrap();
    for (split, n) in [("train", 64), ("valid", 16)] {
        let mut lines = String::new();
        for _ in 0..n {
            let (label, cues) = classes[rng.below(classes.len() as u64) as usize];
            let mut words = vec![cues[rng.below(cues.len() as u64) as usize]];
            words.extend((0..1 + rng.below(6)).map(|_| filler[rng.below(8) as usize]));
            rng.shuffle(&mut words);
            let line = serde_json::json!({"text": words.join(" "), "label": label});
            lines += &format!("{line}\n");
        }
        std::fs::write(dir.join(format!("{split}.jsonl")), lines).unwrap();
    }
}

fn train(args: &[String]) -> std::process::Output {
    let common = [
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--max-seq-length",
        "32",
    ];
    let mut command = mtl();
    command.arg("train").args(args).args(common);
    for (flag, value) in [("--encoder-lr", "1e-3"), ("--head-lr", "1e-2")] {
        if !args.iter().any(|a| a == flag) {
            command.args([flag, value]);
        }
    }
    command.output().unwrap()
}

fn train_ok(args: &[String]) -> String {
    let output = train(args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "mtl train {args:?} failed:\n{stderr}"
    );
    stderr
}

/// The tensors of a saved model whose names start with `prefix`.
fn tensors(model: &Path, prefix: &str) -> Vec<(String, Vec<f32>)> {
    let device = Backend::default_compiled().device(0).unwrap();
    let classifier = MultiTaskClassifier::load(model, &device).unwrap();
    let names = classifier.config().task_names();
    let mut out = Vec::new();
    for (name, head) in names.iter().zip(&classifier.model.heads) {
        out.extend(collect_tensors(head, |p| format!("heads.{name}.{p}")));
    }
    out.extend(collect_tensors(&classifier.model.encoder, |p| {
        format!("encoder.{p}")
    }));
    out.into_iter()
        .map(|t| {
            let (name, _, _, _, bytes) = t.into_parts().unwrap();
            let values = bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()));
            (name, values.collect::<Vec<f32>>())
        })
        .filter(|(name, _)| name.starts_with(prefix))
        .collect()
}

fn predictions(model: &Path, task: &str) -> String {
    let output = mtl()
        .args([
            "predict",
            "--model",
            model.to_str().unwrap(),
            "--task",
            task,
        ])
        .args([
            "--format",
            "jsonl",
            "team win",
            "new phone",
            "the game of it",
        ])
        .output()
        .unwrap();
    assert_succeeded(&output);
    String::from_utf8(output.stdout).unwrap()
}

struct Setup {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    first: std::path::PathBuf,
}

/// A model trained on `topic` and `sentiment`, and the data of a third task, `mood`.
fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    write_task(
        &root.join("topic"),
        &[
            ("sport", &["team", "win", "game"]),
            ("tech", &["phone", "new", "app"]),
        ],
        1,
    );
    write_task(
        &root.join("sentiment"),
        &[
            ("negative", &["bad", "awful"]),
            ("positive", &["good", "great"]),
        ],
        2,
    );
    write_task(
        &root.join("mood"),
        &[("calm", &["quiet", "still"]), ("tense", &["loud", "rush"])],
        3,
    );
    let first = root.join("first");
    let tiny = tiny_dir().display().to_string();
    train_ok(&[
        "--model".into(),
        tiny,
        "--task".into(),
        format!("topic={}", root.join("topic").display()),
        "--task".into(),
        format!("sentiment={}", root.join("sentiment").display()),
        "--output".into(),
        first.display().to_string(),
    ]);
    Setup {
        _dir: dir,
        root,
        first,
    }
}

#[test]
fn a_new_task_on_a_frozen_encoder_keeps_the_old_tasks_bit_for_bit() {
    let setup = setup();
    let second = setup.root.join("second");
    let stderr = train_ok(&[
        "--init".into(),
        setup.first.join("best").display().to_string(),
        "--task".into(),
        format!("mood={}", setup.root.join("mood").display()),
        "--freeze".into(),
        "encoder".into(),
        "--output".into(),
        second.display().to_string(),
    ]);
    assert!(stderr.contains("task topic of "), "{stderr}");
    let (old, new) = (setup.first.join("best"), second.join("best"));
    let device = Backend::default_compiled().device(0).unwrap();
    let model = MultiTaskClassifier::load(&new, &device).unwrap();
    assert_eq!(model.config().task_names(), ["mood", "topic", "sentiment"]);
    for prefix in ["heads.topic.", "heads.sentiment.", "encoder."] {
        let (a, b) = (tensors(&old, prefix), tensors(&new, prefix));
        assert!(!a.is_empty());
        assert_eq!(a, b, "{prefix} changed");
    }
    for task in ["topic", "sentiment"] {
        assert_eq!(predictions(&old, task), predictions(&new, task), "{task}");
    }
    // The new task's head: there, and finite (the old model has none to compare with).
    let mood = tensors(&new, "heads.mood.");
    assert!(!mood.is_empty(), "no mood head");
    for (name, values) in &mood {
        assert!(
            !values.is_empty() && values.iter().all(|v| v.is_finite()),
            "{name}: {values:?}"
        );
    }
}

#[test]
fn continued_tasks_train_from_their_heads_and_others_are_carried() {
    let setup = setup();
    let second = setup.root.join("second");
    train_ok(&[
        "--init".into(),
        setup.first.join("best").display().to_string(),
        "--task".into(),
        format!("sentiment={}", setup.root.join("sentiment").display()),
        "--task".into(),
        format!("mood={}", setup.root.join("mood").display()),
        "--output".into(),
        second.display().to_string(),
    ]);
    let (old, new) = (setup.first.join("best"), second.join("best"));
    assert_eq!(tensors(&old, "heads.topic."), tensors(&new, "heads.topic."));
    let trained = |prefix: &str| {
        let (a, b) = (tensors(&old, prefix), tensors(&new, prefix));
        assert_eq!(a.len(), b.len(), "{prefix}");
        assert!(
            b.iter().flat_map(|(_, v)| v).all(|v| v.is_finite()),
            "{prefix}: not finite"
        );
        assert_ne!(a, b, "{prefix} did not train");
    };
    trained("heads.sentiment.");
    trained("encoder.");

    // Where the continued head starts: the same run with learning rates of 1e-12 ends within
    // float rounding of the saved head (a fresh head, drawn from N(0, 0.02), would be far off).
    let still = setup.root.join("still");
    train_ok(&[
        "--init".into(),
        old.display().to_string(),
        "--task".into(),
        format!("sentiment={}", setup.root.join("sentiment").display()),
        "--encoder-lr".into(),
        "1e-12".into(),
        "--head-lr".into(),
        "1e-12".into(),
        "--output".into(),
        still.display().to_string(),
    ]);
    let (saved, continued) = (
        tensors(&old, "heads.sentiment."),
        tensors(&still.join("best"), "heads.sentiment."),
    );
    assert_eq!(saved.len(), continued.len());
    assert!(!saved.is_empty());
    for ((name, a), (_, b)) in saved.iter().zip(&continued) {
        let diff = max_abs_diff(a, b);
        assert!(
            diff <= 1e-6,
            "{name}: the continued head starts {diff} away"
        );
    }
}

#[test]
fn a_task_with_other_labels_than_the_saved_model_is_refused() {
    let setup = setup();
    let output = train(&[
        "--init".into(),
        setup.first.join("best").display().to_string(),
        "--task".into(),
        format!("topic={}", setup.root.join("mood").display()),
        "--output".into(),
        setup.root.join("second").display().to_string(),
    ]);
    assert_fails_with(
        &output,
        "cannot continue from this model: task topic has the labels [sport, tech] there but [calm, tense] here",
    );
    assert!(!setup.root.join("second").exists());
    let both = train(&[
        "--init".into(),
        setup.first.join("best").display().to_string(),
        "--model".into(),
        tiny_dir().display().to_string(),
    ]);
    assert_fails_with(&both, "--init");
}

/// The `probabilities` of each line of `mtl predict --format jsonl`'s output.
fn probabilities(jsonl: &str) -> Vec<Vec<f32>> {
    jsonl
        .lines()
        .map(|line| {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            serde_json::from_value(row["predictions"][0]["probabilities"].clone()).unwrap()
        })
        .collect()
}

#[test]
fn lora_adapters_from_the_command_line_add_a_task_and_export_merged() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_task(
        &root.join("topic"),
        &[
            ("sport", &["team", "win", "game"]),
            ("tech", &["phone", "new", "app"]),
        ],
        1,
    );
    write_task(
        &root.join("mood"),
        &[("calm", &["quiet", "still"]), ("tense", &["loud", "rush"])],
        3,
    );
    let first = root.join("first");
    train_ok(&[
        "--model".into(),
        tiny_dir().display().to_string(),
        "--task".into(),
        format!("topic={}", root.join("topic").display()),
        "--adapter".into(),
        "lora:4".into(),
        "--output".into(),
        first.display().to_string(),
    ]);
    let second = root.join("second");
    train_ok(&[
        "--init".into(),
        first.join("best").display().to_string(),
        "--task".into(),
        format!("mood={}", root.join("mood").display()),
        "--adapter".into(),
        "lora:4".into(),
        "--output".into(),
        second.display().to_string(),
    ]);
    let (old, new) = (first.join("best"), second.join("best"));
    assert_eq!(predictions(&old, "topic"), predictions(&new, "topic"));
    assert!(
        new.join("adapters/mood/adapter_model.safetensors")
            .is_file()
    );

    let exported = root.join("exported");
    let output = mtl()
        .args(["export", "--model", new.to_str().unwrap()])
        .args([
            "--merge-adapter",
            "mood",
            "--output",
            exported.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_succeeded(&output);
    assert!(!exported.join("adapters").exists());
    let (adapted, merged) = (
        probabilities(&predictions(&new, "mood")),
        probabilities(&predictions(&exported, "mood")),
    );
    assert_eq!(adapted.len(), 3);
    assert!(
        max_abs_diff(&adapted.concat(), &merged.concat()) <= 1e-5,
        "{adapted:?} vs {merged:?}"
    );

    // Adapters run at f32 only: int8 is refused, saying so.
    let output = mtl()
        .args([
            "predict",
            "--model",
            new.to_str().unwrap(),
            "--quantize",
            "int8",
            "x",
        ])
        .output()
        .unwrap();
    assert_fails_with(&output, "LoRA adapters, which run at f32 only");
}
