//! `mtl train` on data as users have it: CSV without ids and with its own column names, a
//! single TSV file without validation split (held out), a sentence-pair task; `mtl predict`
//! on each trained model; and bad data refused before the run directory exists, naming file
//! and line.

use crate::common;

use std::path::Path;

use common::{assert_fails_with, mtl, tiny_dir};
use mtl_data::SplitMix64;

/// `n` rows `(text, label)` whose label is signalled by a cue word.
fn rows(n: usize, seed: u64) -> Vec<(String, &'static str)> {
    let classes: [(&str, &[&str]); 2] = [
        ("good", &["great", "love", "fine"]),
        ("bad", &["awful", "hate", "broken"]),
    ];
    let filler = ["the", "a", "it", "was", "and", "this", "one"];
    let mut rng = SplitMix64::new(seed);
    (0..n)
        .map(|_| {
            let (label, cues) = classes[rng.below(2) as usize];
            let mut words = vec![cues[rng.below(cues.len() as u64) as usize]];
            words.extend((0..1 + rng.below(5)).map(|_| filler[rng.below(7) as usize]));
            rng.shuffle(&mut words);
            (words.join(" "), label)
        })
        .collect()
}

/// A delimited file with a header, quoting every text (one holds a comma and a quote).
fn write_delimited(path: &Path, header: [&str; 2], rows: &[(String, &str)], delimiter: char) {
    let mut out = format!("{}{delimiter}{}\n", header[0], header[1]);
    for (i, (text, label)) in rows.iter().enumerate() {
        let text = if i == 0 {
            format!("{text}, \"really\"")
        } else {
            text.clone()
        };
        out += &format!("\"{}\"{delimiter}{label}\n", text.replace('"', "\"\""));
    }
    std::fs::write(path, out).unwrap();
}

fn train(args: &[&str], output: &Path) -> String {
    let tiny = tiny_dir();
    let mut all = vec!["train", "--model", tiny.to_str().unwrap()];
    all.extend(args);
    all.extend([
        "--output",
        output.to_str().unwrap(),
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--max-seq-length",
        "32",
        "--head-lr",
        "1e-2",
    ]);
    let result = mtl().args(&all).output().unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr).into_owned();
    assert!(result.status.success(), "mtl {all:?} failed:\n{stderr}");
    stderr
}

fn predict(model: &Path, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec![
        "predict",
        "--model",
        model.to_str().unwrap(),
        "--format",
        "jsonl",
    ];
    all.extend(args);
    let result = mtl().args(&all).output().unwrap();
    assert!(
        result.status.success(),
        "mtl {all:?} failed:\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    String::from_utf8(result.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn summary(run: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn a_csv_without_ids_and_with_its_own_columns_trains_and_predicts() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("reviews");
    std::fs::create_dir(&dir).unwrap();
    for (split, n, seed) in [("train", 80, 1), ("valid", 20, 2), ("test", 20, 3)] {
        let path = dir.join(format!("{split}.csv"));
        write_delimited(&path, ["review", "stars"], &rows(n, seed), ',');
    }
    let runs = tempfile::tempdir().unwrap();
    let run = runs.path().join("run");
    let task = format!("stars={}", dir.display());
    let stderr = train(
        &[
            "--task",
            &task,
            "--text-field",
            "review",
            "--label-field",
            "stars",
        ],
        &run,
    );
    assert!(
        stderr.contains("task stars: 80 training examples (bad "),
        "{stderr}"
    );
    let summary = summary(&run);
    assert_eq!(summary["test"][0]["task"], "stars");
    assert_eq!(summary["held_out"], serde_json::json!({}));
    let plan = std::fs::read_to_string(run.join("plan.jsonl")).unwrap();
    assert!(
        plan.contains("\"line-2\""),
        "ids are line numbers: {plan:.200}"
    );
    let predictions = predict(&run.join("best"), &["great fine", "awful broken"]);
    assert_eq!(predictions.len(), 2);
    assert_eq!(predictions[0]["predictions"][0]["task"], "stars");
}

#[test]
fn a_single_tsv_file_holds_out_a_stratified_validation_split() {
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("mood.tsv");
    write_delimited(&file, ["text", "label"], &rows(100, 4), '\t');
    let runs = tempfile::tempdir().unwrap();
    let run = runs.path().join("run");
    let task = format!("mood={}", file.display());
    let stderr = train(&["--task", &task, "--labels", "mood=good,bad"], &run);
    let summary = summary(&run);
    let held = summary["held_out"]["mood"].as_u64().unwrap();
    assert!((9..=11).contains(&held), "{held} of 100 held out");
    assert!(
        stderr.contains(&format!(
            "task mood: no validation file: {held} training examples"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "task mood: {} training examples (good ",
            100 - held
        )),
        "{stderr}"
    );
    assert_eq!(summary["test"], serde_json::json!([]));
    let prediction = &predict(&run.join("best"), &["love it"])[0]["predictions"][0];
    assert_eq!(prediction["probabilities"].as_array().unwrap().len(), 2);
    assert!(["good", "bad"].contains(&prediction["label"].as_str().unwrap()));
}

#[test]
fn a_sentence_pair_task_trains_on_pairs_and_predicts_pairs() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("pairs");
    std::fs::create_dir(&dir).unwrap();
    for (split, n, seed) in [("train", 80, 5), ("valid", 20, 6)] {
        let mut out = String::new();
        for (i, (text, label)) in rows(n, seed).into_iter().enumerate() {
            let (first, second) = text.split_once(' ').unwrap_or((&text, "it"));
            let label = if label == "good" { "same" } else { "different" };
            let line = serde_json::json!({"id": i, "a": first, "b": second, "label": label});
            out += &format!("{line}\n");
        }
        std::fs::write(dir.join(format!("{split}.jsonl")), out).unwrap();
    }
    let runs = tempfile::tempdir().unwrap();
    let run = runs.path().join("run");
    let task = format!("paraphrase={}", dir.display());
    train(
        &[
            "--task",
            &task,
            "--text-field",
            "a",
            "--text-pair-field",
            "b",
            "--id-field",
            "id",
        ],
        &run,
    );
    let plan = std::fs::read_to_string(run.join("plan.jsonl")).unwrap();
    assert!(!plan.contains("line-"), "ids come from the id field");
    let predictions = predict(
        &run.join("best"),
        &["--pairs", "great\tthe one", "awful\tit was"],
    );
    assert_eq!(predictions[1]["text"], "awful");
    assert_eq!(predictions[1]["text_pair"], "it was");
    let no_tab = mtl()
        .args([
            "predict",
            "--model",
            run.join("best").to_str().unwrap(),
            "--pairs",
            "no tab",
        ])
        .output()
        .unwrap();
    assert_fails_with(
        &no_tab,
        "text argument 1 (\"no tab\"): --pairs needs TEXT<TAB>PAIR",
    );
}

#[test]
fn bad_data_is_refused_before_the_run_directory_exists_naming_file_and_line() {
    let data = tempfile::tempdir().unwrap();
    let good = "text,label\nfine day,good\nawful day,bad\n";
    let cases = [
        (
            "text,label\nfine day,good\n\"open quote,bad\nawful,bad\n",
            "train.csv:3: malformed line: a quoted field is never closed",
        ),
        (
            "text,label\nfine day,good\nawful day,bad \n",
            "train.csv:3: malformed line: the label \"bad \" has whitespace around it",
        ),
        ("", "train.csv: empty file"),
        (
            "review,label\nfine day,good\n",
            "train.csv:1: missing field \"text\"",
        ),
        (
            "text,label\nfine day,good\nawful day,meh\n",
            "train.csv:3: unknown label \"meh\" (known labels: good, bad)",
        ),
    ];
    for (i, (content, message)) in cases.iter().enumerate() {
        let dir = data.path().join(format!("case{i}"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("train.csv"), content).unwrap();
        std::fs::write(dir.join("valid.csv"), good).unwrap();
        let run = data.path().join(format!("run{i}"));
        let tiny = tiny_dir();
        let task = format!("mood={}", dir.display());
        let output = mtl()
            .args(["train", "--model", tiny.to_str().unwrap(), "--task", &task])
            .args([
                "--labels",
                "mood=good,bad",
                "--output",
                run.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert_fails_with(&output, message);
        assert!(!run.exists(), "case {i}: the run directory was made");
    }
}
