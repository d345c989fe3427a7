//! End-to-end tests of `mtl train` and `mtl eval` on the tiny fixture model and small
//! generated data sets.

use crate::common;
use crate::tasks;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use burn::module::Module;
use common::{mtl, tiny_dir};
use mtl_bert::collect_tensors;
use mtl_bert::{Backend, LoraConfig, LoraTargets};
use mtl_data::SplitMix64;
use mtl_model::{AdapterConfig, AdapterScope, MtlConfig, MultiTaskClassifier, TaskConfig};
use tasks::data;

/// `mtl train` on the tiny model and `tasks`, small batches and fast learning rates.
fn train_args(tasks: &[String; 2], output: &Path) -> Vec<String> {
    train_args_with_lrs(tasks, output, "1e-3", "1e-2")
}

fn train_args_with_lrs(
    tasks: &[String; 2],
    output: &Path,
    encoder_lr: &str,
    head_lr: &str,
) -> Vec<String> {
    let mut args: Vec<String> = ["train", "--model"].map(String::from).to_vec();
    args.push(tiny_dir().display().to_string());
    for task in tasks {
        args.extend(["--task".into(), task.clone()]);
    }
    args.extend(["--output".into(), output.display().to_string()]);
    args.extend(
        [
            "--batch-size",
            "8",
            "--max-seq-length",
            "32",
            "--encoder-lr",
            encoder_lr,
            "--head-lr",
            head_lr,
        ]
        .map(String::from),
    );
    args
}

/// The data directory of a `name=DIR` task argument.
fn tasks_dir(task: &str) -> &Path {
    Path::new(task.split_once('=').unwrap().1)
}

fn run_ok(args: &[String]) -> String {
    let output = mtl().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "mtl {} failed:\n{stderr}",
        args.join(" ")
    );
    stderr
}

/// Every parameter of a checkpoint's model, by name.
fn checkpoint_weights(run: &Path) -> Vec<(String, Vec<f32>)> {
    checkpoint_weights_of(run, None)
}

/// [`checkpoint_weights`] of a model with `adapter`.
fn checkpoint_weights_of(run: &Path, adapter: Option<AdapterConfig>) -> Vec<(String, Vec<f32>)> {
    let device = Backend::default_compiled().device(0).unwrap();
    let mut config = MtlConfig::new(vec![
        TaskConfig::new("topic", &["sport", "tech"]),
        TaskConfig::new("sentiment", &["negative", "positive"]),
    ]);
    config.adapter = adapter;
    let classifier = MultiTaskClassifier::from_pretrained(tiny_dir(), config, 0, &device).unwrap();
    let model = classifier
        .model
        .try_load_file(run.join("checkpoint/model.bpk"))
        .unwrap();
    collect_tensors(&model, |p| p.to_owned())
        .into_iter()
        .map(|t| {
            let (name, _, _, _, bytes) = t.into_parts().unwrap();
            let values = bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()));
            (name, values.collect())
        })
        .collect()
}

/// The largest absolute difference between two checkpoints' tensors; panics, naming the
/// tensor and index, on a NaN or infinite weight (see `common::max_tensor_difference`, whose
/// tests show it).
fn max_difference(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> f32 {
    common::max_tensor_difference(a, b)
}

#[test]
fn training_writes_a_complete_run_directory_and_eval_reads_it() {
    let (_data, tasks) = data();
    let runs = tempfile::tempdir().unwrap();
    let run = runs.path().join("run");
    let mut args = train_args(&tasks, &run);
    args.extend(["--epochs", "10", "--eval-every", "40"].map(String::from));
    let stderr = run_ok(&args);
    assert!(stderr.contains("backend: flex"), "{stderr}");
    assert!(
        stderr.contains("until the first task runs out"),
        "the epoch definition is logged: {stderr}"
    );
    for file in [
        "config.toml",
        "metrics.jsonl",
        "plan.jsonl",
        "summary.json",
        "plots/loss.svg",
        "plots/accuracy.svg",
        "best/mtl.json",
        "best/model.safetensors",
        "checkpoint/state.json",
    ] {
        assert!(run.join(file).is_file(), "{file} written");
    }
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert!(metrics.contains(r#""kind":"train""#) && metrics.contains(r#""split":"valid""#));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["steps"], 230);
    // The cue words make both tasks easy: training must have learnt more than chance (0.5).
    for task in summary["test"].as_array().unwrap() {
        assert!(task["accuracy"].as_f64().unwrap() >= 0.7, "{task}");
    }

    let out = mtl()
        .args([
            "eval",
            "--model",
            &run.join("best").display().to_string(),
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let evaluations: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(evaluations.as_array().unwrap().len(), 2);
    assert_eq!(evaluations[0]["task"], "topic");
    assert_eq!(evaluations[0]["examples"], 24);
    let best_test = summary["test"][0]["accuracy"].as_f64().unwrap();
    assert!((evaluations[0]["accuracy"].as_f64().unwrap() - best_test).abs() < 1e-9);

    // `mtl predict` gives the labels `mtl eval` scored: its accuracy on the topic test split
    // is the one eval reported.
    let test_lines = std::fs::read_to_string(tasks_dir(&tasks[0]).join("test.jsonl")).unwrap();
    let examples: Vec<serde_json::Value> = test_lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let texts: String = examples
        .iter()
        .map(|e| format!("{}\n", e["text"].as_str().unwrap()))
        .collect();
    let texts_file = runs.path().join("texts.txt");
    std::fs::write(&texts_file, texts).unwrap();
    let best = run.join("best").display().to_string();
    let out = mtl()
        .args(["predict", "--model", &best, "--format", "jsonl", "--input"])
        .arg(&texts_file)
        .args(["--task", "topic", "--batch-size", "5"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let predictions: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(predictions.len(), examples.len());
    let correct = examples
        .iter()
        .zip(&predictions)
        .filter(|(example, prediction)| {
            assert_eq!(example["text"], prediction["text"], "input order is kept");
            let only = &prediction["predictions"].as_array().unwrap()[..];
            assert_eq!(only.len(), 1, "only the asked task: {prediction}");
            example["label"] == only[0]["label"]
        })
        .count();
    let accuracy = correct as f64 / examples.len() as f64;
    assert!((evaluations[0]["accuracy"].as_f64().unwrap() - accuracy).abs() < 1e-9);
    let out = mtl()
        .args(["predict", "--model", &best, "good team"])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && table.lines().count() == 2 && table.contains("sentiment"),
        "one line per task: {table}"
    );
    let out = mtl()
        .args(["predict", "--model", &best, "--task", "weather", "x"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains(r#"unknown task "weather""#),
        "{stderr}"
    );

    let out = mtl()
        .args([
            "eval",
            "--model",
            &run.join("best").display().to_string(),
            "--task",
            "sentiment",
            "--split",
            "valid",
        ])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("task sentiment") && table.contains("confusion"),
        "{table}"
    );
}

#[test]
fn an_existing_run_is_not_overwritten_by_accident() {
    let (_data, tasks) = data();
    let runs = tempfile::tempdir().unwrap();
    let run = runs.path().join("run");
    let mut args = train_args(&tasks, &run);
    args.extend(["--epochs", "1"].map(String::from));
    run_ok(&args);
    let out = mtl().args(&args).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("already holds a run") && stderr.contains("--resume"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn resuming_after_a_kill_gives_the_uninterrupted_result() {
    kill_and_resume(&[], None);
}

#[test]
fn resuming_lora_adapters_after_a_kill_gives_the_uninterrupted_result() {
    let adapter = AdapterConfig {
        lora: LoraConfig {
            rank: 4,
            alpha: 4.0,
            targets: LoraTargets::All,
        },
        scope: AdapterScope::PerTask,
    };
    kill_and_resume(
        &["--adapter", "lora:4", "--adapter-targets", "all"],
        Some(adapter),
    );
}

/// Trains the tiny model on the two tasks with `extra` settings twice, killing the second run
/// after its first checkpoint and resuming it: the same final weights (of a model with
/// `adapter`) and the same log.
fn kill_and_resume(extra: &[&str], adapter: Option<AdapterConfig>) {
    let (_data, tasks) = data();
    let runs = tempfile::tempdir().unwrap();
    let mut settings = [
        "--epochs",
        "12",
        "--checkpoint-every",
        "20",
        "--log-every",
        "5",
    ]
    .map(String::from)
    .to_vec();
    settings.extend(extra.iter().map(|s| s.to_string()));

    let whole = runs.path().join("whole");
    let mut args = train_args(&tasks, &whole);
    args.extend(settings.clone());
    run_ok(&args);

    let killed = runs.path().join("killed");
    let mut args = train_args(&tasks, &killed);
    args.extend(settings);
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("mtl"))
        .args(&args)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let state = killed.join("checkpoint/state.json");
    let deadline = Instant::now() + Duration::from_secs(120);
    let killed_at = loop {
        if let Ok(text) = std::fs::read_to_string(&state)
            && let Ok(value) = serde_json::from_str::<serde_json::Value>(&text)
            && value["step"].as_u64().unwrap_or(0) >= 20
        {
            child.kill().unwrap();
            break value["step"].as_u64().unwrap();
        }
        assert!(Instant::now() < deadline, "no checkpoint appeared");
        std::thread::sleep(Duration::from_millis(2));
    };
    child.wait().unwrap();
    assert!(
        killed_at < 276,
        "killed before the end (at the checkpoint of step {killed_at})"
    );

    let stderr = run_ok(&[
        "train".into(),
        "--resume".into(),
        killed.display().to_string(),
    ]);
    assert!(stderr.contains("resuming at step"), "{stderr}");
    let (a, b) = (
        checkpoint_weights_of(&whole, adapter),
        checkpoint_weights_of(&killed, adapter),
    );
    if adapter.is_some() {
        assert!(a.iter().any(|(name, _)| name.starts_with("adapters.")));
    }
    let difference = max_difference(&a, &b);
    assert!(difference <= 1e-6, "final weights differ by {difference}");
    assert_eq!(
        metrics_without_seconds(&killed),
        metrics_without_seconds(&whole),
        "the resumed log reads as one run"
    );
}

#[test]
fn a_frozen_encoder_trains_the_heads_on_cached_embeddings_with_the_same_result() {
    let (_data, tasks) = data();
    let runs = tempfile::tempdir().unwrap();
    let mut weights = Vec::new();
    for (name, extra) in [("cached", None), ("uncached", Some("--no-embedding-cache"))] {
        let run = runs.path().join(name);
        let mut args = train_args(&tasks, &run);
        args.extend(["--epochs", "3", "--freeze", "encoder"].map(String::from));
        args.extend(extra.map(String::from));
        let stderr = run_ok(&args);
        assert_eq!(
            stderr.contains("computing its embeddings once"),
            extra.is_none(),
            "{stderr}"
        );
        weights.push(checkpoint_weights(&run));
    }
    let difference = max_difference(&weights[0], &weights[1]);
    assert!(
        difference <= 1e-5,
        "cached and uncached training differ by {difference}"
    );
}

#[test]
fn freezing_everything_evaluates_without_training() {
    let (_data, tasks) = data();
    let runs = tempfile::tempdir().unwrap();
    let run = runs.path().join("run");
    let mut args = train_args(&tasks, &run);
    args.extend(["--freeze", "all"].map(String::from));
    let stderr = run_ok(&args);
    assert!(stderr.contains("nothing trains"), "{stderr}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["trained"], false);
    assert_eq!(summary["steps"], 0);
}

#[test]
fn joint_steps_and_other_samplers_train() {
    let (_data, tasks) = data();
    let runs = tempfile::tempdir().unwrap();
    for (name, extra) in [
        (
            "joint",
            &["--step-mode", "joint", "--grad-accumulation", "2"][..],
        ),
        (
            "joint-methods",
            &[
                "--step-mode",
                "joint",
                "--loss-weighting",
                "uncertainty",
                "--grad-aggregation",
                "upgrad",
                "--grad-accumulation",
                "2",
            ][..],
        ),
        (
            "temperature",
            &[
                "--sampler",
                "temperature:2",
                "--epoch",
                "steps:30",
                "--layer-lr-decay",
                "0.8",
            ][..],
        ),
        (
            "unfreeze",
            &["--unfreeze-every", "1", "--epochs", "4", "--head", "mlp:16"][..],
        ),
    ] {
        let run = runs.path().join(name);
        let mut args = train_args(&tasks, &run);
        args.extend(extra.iter().map(|s| s.to_string()));
        let stderr = run_ok(&args);
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap())
                .unwrap();
        assert!(summary["steps"].as_u64().unwrap() > 0, "{name}: {stderr}");
        if name == "joint-methods" {
            let log = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
            assert!(
                log.contains("\"log_variance\"") && log.contains("\"grad_weight\""),
                "the step's weights are logged"
            );
            let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
            assert!(config.contains("grad_aggregation = \"upgrad\""), "{config}");
            let plot = std::fs::read_to_string(run.join("plots/weights.svg")).unwrap();
            assert!(
                plot.contains("topic gradient weight"),
                "the weights are plotted"
            );
        }
        if name == "unfreeze" {
            assert!(
                stderr.contains("top 0 of 2 encoder layers train"),
                "{stderr}"
            );
            assert!(
                stderr.contains("top 2 of 2 encoder layers train"),
                "{stderr}"
            );
        }
    }
}

#[test]
fn a_diverging_loss_stops_the_run_naming_step_and_task() {
    let (_data, tasks) = data();
    let runs = tempfile::tempdir().unwrap();
    let run = runs.path().join("run");
    let mut args = train_args_with_lrs(&tasks, &run, "1e30", "1e30");
    args.extend(["--max-grad-norm", "0", "--warmup-ratio", "0"].map(String::from));
    let out = mtl().args(&args).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("(not finite); stopping"), "{stderr}");
    assert!(
        stderr.contains("step ") && stderr.contains("task "),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn configuration_errors_are_clear() {
    let (_data, tasks) = data();
    let runs = tempfile::tempdir().unwrap();
    let config = runs.path().join("bad.toml");
    std::fs::write(&config, "epocs = 3\n").unwrap();
    let out = mtl()
        .args(["train", "--config", &config.display().to_string()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("unknown field `epocs`"),
        "{stderr}"
    );

    let mut args = train_args(&tasks, &runs.path().join("run"));
    args.extend(["--sampler", "random"].map(String::from));
    let out = mtl().args(&args).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown sampler \"random\""));

    let out = mtl()
        .args(["train", "--resume", &runs.path().display().to_string()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("is not a run directory to resume"),
        "{stderr}"
    );

    let mut args = train_args(&tasks, &runs.path().join("run2"));
    args.extend(["--freeze", "head:spam"].map(String::from));
    let out = mtl().args(&args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("unknown task \"spam\""),
        "{stderr}"
    );

    // Joint mode's multi-task methods: an unknown name lists the known ones, a bad parameter
    // names the flag, and either needs joint steps.
    for (flag, value, expected) in [
        (
            "--loss-weighting",
            "famo",
            "equal, uncertainty, dwa[:T], rlw, gradnorm[:ALPHA]",
        ),
        (
            "--loss-weighting",
            "dwa:-2",
            "dwa:-2: the parameter must be a positive temperature",
        ),
        (
            "--grad-aggregation",
            "nash",
            "sum, pcgrad, mgda, cagrad[:C], imtl-g, upgrad",
        ),
        (
            "--grad-aggregation",
            "cagrad:x",
            "cagrad:x: the parameter must be a number >= 0",
        ),
        (
            "--grad-aggregation",
            "pcgrad",
            "grad_aggregation weighs or combines",
        ),
    ] {
        let mut args = train_args(&tasks, &runs.path().join("run3"));
        args.extend([flag, value].map(String::from));
        let out = mtl().args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(expected),
            "{flag} {value}: {stderr}"
        );
        if value != "pcgrad" {
            assert!(stderr.contains(flag), "{flag} {value}: {stderr}");
        }
    }

    // LoRA adapters' flags.
    for (extra, expected) in [
        (&["--adapter", "lora:0"][..], "the rank must be at least 1"),
        (&["--adapter", "lora"], "expected none or lora:RANK[:ALPHA]"),
        (
            &["--adapter", "lora:4:-1"],
            "alpha must be a positive number",
        ),
        (
            &["--adapter-targets", "ffn"],
            "unknown adapter targets \"ffn\"",
        ),
        (&["--adapter-scope", "shared"], "give --adapter too"),
        (
            &[
                "--adapter",
                "lora:4",
                "--step-mode",
                "joint",
                "--grad-aggregation",
                "pcgrad",
            ],
            "which LoRA adapters keep frozen",
        ),
    ] {
        let mut args = train_args(&tasks, &runs.path().join("run4"));
        args.extend(extra.iter().map(|s| s.to_string()));
        let out = mtl().args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(expected) && !stderr.contains("panicked"),
            "{extra:?}: {stderr}"
        );
        assert!(
            !runs.path().join("run4").exists(),
            "{extra:?}: a run was made"
        );
    }
}

/// The settings of the crash-safety runs: 2 epochs of 24 steps, a checkpoint every 10 steps,
/// an evaluation every 12 (so `best/` is replaced mid-epoch too).
fn short_run_args(tasks: &[String; 2], output: &Path) -> Vec<String> {
    let mut args = train_args(tasks, output);
    args.extend(
        [
            "--epochs",
            "2",
            "--checkpoint-every",
            "10",
            "--eval-every",
            "12",
            "--log-every",
            "5",
        ]
        .map(String::from),
    );
    args
}

/// Finishes a run that was killed: `--resume` when its configuration was written, else the
/// same command again (a run killed before it started holds nothing to resume).
fn finish_killed_run(args: &[String], run: &Path) {
    if run.join("config.toml").exists() {
        run_ok(&["train".into(), "--resume".into(), run.display().to_string()]);
    } else {
        run_ok(args);
    }
}

/// The step of a run's checkpoint (`checkpoint/state.json`), if it has one.
fn checkpoint_step(run: &Path) -> Option<usize> {
    let state = std::fs::read_to_string(run.join("checkpoint/state.json")).ok()?;
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    Some(state["step"].as_u64().unwrap() as usize)
}

/// The metrics log without its timing field.
fn metrics_without_seconds(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("seconds");
            v
        })
        .collect()
}

/// A finished run matches the uninterrupted one: weights, best model and log, and nothing
/// but mtl's own entries is left in the run directory.
fn assert_same_run(whole: &Path, run: &Path, what: &str) {
    let difference = max_difference(&checkpoint_weights(whole), &checkpoint_weights(run));
    assert!(
        difference == 0.0,
        "{what}: final weights differ by {difference}"
    );
    let best = |r: &Path| std::fs::read(r.join("best/model.safetensors")).unwrap();
    assert!(best(whole) == best(run), "{what}: best/ differs");
    assert_eq!(
        metrics_without_seconds(run),
        metrics_without_seconds(whole),
        "{what}: the log reads as one run"
    );
    for entry in std::fs::read_dir(run).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            mtl_train::RUN_DIR_ENTRIES.contains(&name.as_str()) && !name.ends_with(".old"),
            "{what}: leftover {name}"
        );
    }
}

#[test]
fn a_kill_at_every_atomic_step_or_at_random_instants_resumes_to_the_uninterrupted_run() {
    let (_data, tasks) = data();
    let runs = tempfile::tempdir().unwrap();
    let whole = runs.path().join("whole");
    let started = Instant::now();
    run_ok(&short_run_args(&tasks, &whole));
    let run_time = started.elapsed();

    // `MTL_FAULT_AT_STEP=k` SIGKILLs the process just before its k-th rename (of a file or a
    // checkpoint/best directory); k runs up to the first run that is never killed.
    let mut step = 1;
    loop {
        let run = runs.path().join(format!("fault-{step}"));
        let args = short_run_args(&tasks, &run);
        let status = std::process::Command::new(assert_cmd::cargo::cargo_bin("mtl"))
            .args(&args)
            .env("MTL_FAULT_AT_STEP", step.to_string())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        if status.success() {
            eprintln!("killed and resumed at each of {} atomic steps", step - 1);
            assert!(step > 20, "only {step} atomic steps in a run");
            break;
        }
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "step {step}: killed by SIGKILL"
        );
        finish_killed_run(&args, &run);
        assert_same_run(&whole, &run, &format!("killed at atomic step {step}"));
        std::fs::remove_dir_all(&run).unwrap();
        step += 1;
    }

    // Kills at seeded random points of training, one after another, then a resume to the end.
    // A point is a line count of metrics.jsonl (a line every 5 steps and at each evaluation),
    // at least two lines before the end, so that every kill interrupts training: each must end
    // the process by SIGKILL, leave no summary, and leave a checkpoint (if any) short of the
    // last step.
    let lines = |r: &Path| {
        std::fs::read_to_string(r.join("metrics.jsonl"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    let whole_lines = lines(&whole);
    let total_steps = checkpoint_step(&whole).expect("the whole run's checkpoint");
    // One point in each third of lines 1..=n-2, two lines or more apart: a resumed run first
    // cuts the log back to its checkpoint (at or before the previous point), so the old log's
    // lines never reach the next point before the resumed run trains.
    let third = (whole_lines - 2) / 3;
    assert!(third >= 2, "{whole_lines} log lines");
    let mut rng = SplitMix64::new(7);
    let points: Vec<usize> = (0..3)
        .map(|i| 1 + i * third + rng.below(third as u64 - 1) as usize)
        .collect();
    let run = runs.path().join("random");
    let args = short_run_args(&tasks, &run);
    for (attempt, point) in points.into_iter().enumerate() {
        let resume = ["train".into(), "--resume".into(), run.display().to_string()];
        let command: &[String] = if run.join("config.toml").exists() {
            &resume
        } else {
            &args
        };
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("mtl"))
            .args(command)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let waited = Instant::now();
        while lines(&run) < point {
            assert!(
                child.try_wait().unwrap().is_none(),
                "random kill {attempt}: the run ended before log line {point}"
            );
            assert!(
                waited.elapsed() < run_time * 20,
                "log line {point} never came"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        child.kill().unwrap();
        let status = child.wait().unwrap();
        eprintln!("random kill {attempt} at log line {point}: {status}");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "random kill {attempt} at log line {point}: {status}"
        );
        assert!(!run.join("summary.json").exists(), "random kill {attempt}");
        if let Some(step) = checkpoint_step(&run) {
            assert!(
                step < total_steps,
                "random kill {attempt}: checkpoint at step {step} of {total_steps}"
            );
        }
    }
    finish_killed_run(&args, &run);
    assert_same_run(&whole, &run, "killed at random instants");
}

#[test]
fn overwrite_deletes_only_mtl_runs_and_never_the_working_directory() {
    let (_data, tasks) = data();
    let root = tempfile::tempdir().unwrap();
    // A project that happens to have a config.toml.
    let project = root.path().join("project");
    std::fs::create_dir_all(project.join("src")).unwrap();
    std::fs::write(project.join("config.toml"), "[package]\n").unwrap();
    std::fs::write(project.join("src/main.rs"), "fn main() {}\n").unwrap();
    let mut args = train_args(&tasks, &project);
    args.extend(["--epochs", "1", "--overwrite"].map(String::from));
    let out = mtl().args(&args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("no .mtl-run marker"),
        "{stderr}"
    );
    assert!(project.join("src/main.rs").is_file() && project.join("config.toml").is_file());

    // A real run, with a file of the user's inside, replaced from within it.
    let run = root.path().join("run");
    let mut args = train_args(&tasks, &run);
    args.extend(["--epochs", "1"].map(String::from));
    run_ok(&args);
    std::fs::write(run.join("notes.txt"), "mine").unwrap();
    let mut here = train_args(&tasks, Path::new("."));
    here.extend(["--epochs", "1", "--overwrite"].map(String::from));
    let out = mtl().args(&here).current_dir(&run).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("working directory"),
        "{stderr}"
    );
    assert!(run.join("best").is_dir(), "nothing deleted");
    // From a directory of the user's inside the run: the run named by its absolute path, and
    // as `..`, holds the working directory.
    let inside = run.join("mine");
    std::fs::create_dir(&inside).unwrap();
    for output in [run.clone(), Path::new("..").to_path_buf()] {
        let mut args = train_args(&tasks, &output);
        args.extend(["--epochs", "1", "--overwrite"].map(String::from));
        let out = mtl().args(&args).current_dir(&inside).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains("working directory"),
            "{}: {stderr}",
            output.display()
        );
        assert!(
            run.join("best").is_dir() && inside.is_dir(),
            "nothing deleted"
        );
    }

    args.push("--overwrite".into());
    run_ok(&args);
    assert_eq!(
        std::fs::read_to_string(run.join("notes.txt")).unwrap(),
        "mine"
    );
    assert!(inside.is_dir(), "the user's directory is kept");
}

#[test]
fn bad_data_fails_before_the_run_directory_is_made() {
    let (data, tasks) = data();
    let broken = data.path().join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    for split in ["train", "valid", "test"] {
        std::fs::write(
            broken.join(format!("{split}.jsonl")),
            "{\"id\": \"1\", \"text\": \n",
        )
        .unwrap();
    }
    let runs = tempfile::tempdir().unwrap();
    let run = runs.path().join("run");
    let bad = [tasks[0].clone(), format!("broken={}", broken.display())];
    let out = mtl().args(train_args(&bad, &run)).output().unwrap();
    assert!(!out.status.success());
    assert!(!run.exists(), "nothing written for a run that cannot start");
    // The same command with good data then starts without --overwrite.
    let mut args = train_args(&tasks, &run);
    args.extend(["--epochs", "1"].map(String::from));
    run_ok(&args);
}

#[test]
fn a_second_process_cannot_train_in_a_locked_run() {
    let (_data, tasks) = data();
    let runs = tempfile::tempdir().unwrap();
    let run = runs.path().join("run");
    let mut args = train_args(&tasks, &run);
    args.extend(["--epochs", "40"].map(String::from));
    let mut first = std::process::Command::new(assert_cmd::cargo::cargo_bin("mtl"))
        .args(&args)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !run.join("plan.jsonl").exists() {
        assert!(Instant::now() < deadline, "the first run did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = mtl()
        .args(["train", "--resume", &run.display().to_string()])
        .output()
        .unwrap();
    first.kill().unwrap();
    first.wait().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("another mtl process"),
        "{stderr}"
    );
}

#[test]
fn a_corrupt_checkpoint_is_refused_and_resume_may_lower_learning_rates() {
    let (_data, tasks) = data();
    let runs = tempfile::tempdir().unwrap();
    let run = runs.path().join("run");
    let mut args = train_args(&tasks, &run);
    args.extend(["--epochs", "1"].map(String::from));
    run_ok(&args);
    let model = run.join("checkpoint/model.bpk");
    let mut bytes = std::fs::read(&model).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&model, &bytes).unwrap();
    let resume = [
        "train".to_owned(),
        "--resume".into(),
        run.display().to_string(),
    ];
    let out = mtl().args(&resume).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("is corrupt"),
        "{stderr}"
    );

    bytes[middle] ^= 0x10;
    std::fs::write(&model, &bytes).unwrap();
    let mut lower = resume.to_vec();
    lower.extend(["--encoder-lr", "1e-4", "--head-lr", "1e-3"].map(String::from));
    let stderr = run_ok(&lower);
    assert!(
        stderr.contains("encoder learning rate: 0.001 -> 0.0001"),
        "{stderr}"
    );
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(config.contains("encoder_lr = 0.0001"), "{config}");
}

#[test]
fn diverged_weights_never_reach_a_checkpoint() {
    let (_data, tasks) = data();
    let runs = tempfile::tempdir().unwrap();
    let run = runs.path().join("run");
    // Learning rates beyond f32: the first step makes the weights infinite while its loss,
    // computed before the update, is finite; the checkpoint after it must not be written.
    let mut args = train_args_with_lrs(&tasks, &run, "1e39", "1e39");
    args.extend(
        [
            "--max-grad-norm",
            "0",
            "--warmup-ratio",
            "0",
            "--checkpoint-every",
            "1",
        ]
        .map(String::from),
    );
    let out = mtl().args(&args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("hold NaN or infinite values"),
        "{stderr}"
    );
    assert!(!run.join("checkpoint").exists(), "no checkpoint of step 1");
}

#[test]
fn a_run_started_with_relative_paths_resumes_from_another_directory() {
    let (data, _) = data();
    // Relative task directories, model and output, from the data directory.
    let tiny = tiny_dir().canonicalize().unwrap();
    let ups = data.path().canonicalize().unwrap().components().count() - 1;
    let tiny_relative = format!(
        "{}{}",
        "../".repeat(ups),
        tiny.to_str().unwrap().trim_start_matches('/')
    );
    let tasks = ["topic=topic".to_owned(), "sentiment=sentiment".to_owned()];
    let mut args = train_args(&tasks, Path::new("run"));
    args[2] = tiny_relative;
    args.extend(["--epochs", "2", "--checkpoint-every", "10"].map(String::from));
    let status = std::process::Command::new(assert_cmd::cargo::cargo_bin("mtl"))
        .args(&args)
        .current_dir(data.path())
        .env("MTL_FAULT_AT_STEP", "8")
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "killed mid-run");
    let run = data.path().join("run");
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(config.contains(tiny.to_str().unwrap()), "{config}");
    let out = mtl()
        .args(["train", "--resume", run.to_str().unwrap()])
        .current_dir("/")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
}
