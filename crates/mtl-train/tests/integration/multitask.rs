//! Joint mode's multi-task methods in short runs of the tiny fixture model: each loss
//! weighting's logged weights are what the method says, each gradient aggregation trains to a
//! finite loss and logs its weights, the same seed gives the same run, and a run stopped at a
//! checkpoint resumes to the uninterrupted run with the methods' state.

use crate::fixtures;
use crate::tasks;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use burn::module::Module;
use fixtures::tiny_dir;
use mtl_bert::{Backend, collect_tensors};
use mtl_model::{MtlConfig, MultiTaskClassifier, TaskConfig};
use mtl_train::multitask::WeightingState;
use mtl_train::multitask::weighting::dwa_weights;
use mtl_train::{
    Event, GradAggregation, LossWeighting, Record, Start, StepMode, TaskSpec, TrainConfig,
    read_records, train,
};
use tasks::data;

/// Joint steps of the tiny model on `tasks` (`NAME=DIR`): 12 steps an epoch (the topic task's
/// 96 examples in batches of 8; the last step has topic's batch alone), a train record every
/// step, no mid-epoch checkpoint.
fn joint_config(tasks: &[String], output: &Path) -> TrainConfig {
    TrainConfig {
        model: tiny_dir().display().to_string(),
        output: output.to_path_buf(),
        tasks: tasks
            .iter()
            .map(|t| {
                let (name, dir) = t.split_once('=').unwrap();
                TaskSpec::new(name, dir)
            })
            .collect(),
        epochs: 1,
        batch_size: 8,
        max_seq_length: 32,
        encoder_lr: 1e-3,
        head_lr: 1e-2,
        step_mode: StepMode::Joint,
        log_every: 1,
        checkpoint_every: 0,
        ..TrainConfig::default()
    }
}

/// Trains a new run; returns its log.
fn run(config: &TrainConfig) -> Vec<Record> {
    let device = Backend::default_compiled().device(0).unwrap();
    train(
        config,
        &device,
        Start::New { overwrite: false },
        &mut mtl_train::Silent,
    )
    .unwrap();
    read_records(&config.output.join("metrics.jsonl")).unwrap()
}

/// One train record's fields that these tests read.
#[derive(Debug, Clone, PartialEq)]
struct Train {
    step: usize,
    epoch: usize,
    task: String,
    loss: f64,
    loss_weight: Option<f64>,
    log_variance: Option<f64>,
    grad_weight: Option<f64>,
}

fn train_records(records: &[Record]) -> Vec<Train> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Train {
                step,
                epoch,
                task,
                loss,
                loss_weight,
                log_variance,
                grad_weight,
                ..
            } => Some(Train {
                step: *step,
                epoch: *epoch,
                task: task.clone(),
                loss: *loss,
                loss_weight: *loss_weight,
                log_variance: *log_variance,
                grad_weight: *grad_weight,
            }),
            _ => None,
        })
        .collect()
}

/// The train records grouped by step (the last step of an epoch may have one task only: the
/// smaller task runs out first).
fn by_step(records: &[Train]) -> Vec<Vec<&Train>> {
    let mut steps: Vec<Vec<&Train>> = Vec::new();
    for r in records {
        match steps.last_mut() {
            Some(step) if step[0].step == r.step => step.push(r),
            _ => steps.push(vec![r]),
        }
    }
    steps
}

/// Equal within a few units in the last place (what the log's JSON numbers read back to).
fn close(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= 1e-14 * x.abs())
}

/// Every parameter of a run's checkpoint model (the two test tasks' heads), by name.
fn checkpoint_weights(run: &Path) -> Vec<(String, Vec<u8>)> {
    let device = Backend::default_compiled().device(0).unwrap();
    let config = MtlConfig::new(vec![
        TaskConfig::new("topic", &["sport", "tech"]),
        TaskConfig::new("sentiment", &["negative", "positive"]),
    ]);
    let classifier = MultiTaskClassifier::from_pretrained(tiny_dir(), config, 0, &device).unwrap();
    let model = classifier
        .model
        .try_load_file(run.join("checkpoint/model.bpk"))
        .unwrap();
    collect_tensors(&model, |p| p.to_owned())
        .into_iter()
        .map(|t| {
            let (name, _, _, _, bytes) = t.into_parts().unwrap();
            (name, bytes.to_vec())
        })
        .collect()
}

/// The run's log without its timings.
fn log_without_seconds(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|line| {
            let mut value: serde_json::Value = serde_json::from_str(line).unwrap();
            value.as_object_mut().unwrap().remove("seconds");
            value
        })
        .collect()
}

#[test]
fn loss_weightings_log_the_weights_they_use() {
    let (_data, tasks) = data();
    let runs = tempfile::tempdir().unwrap();

    // Uncertainty: w = exp(-s), s = 0 at the first step, learned after it; the same seed
    // gives the same run.
    let config = TrainConfig {
        loss_weighting: LossWeighting::Uncertainty,
        ..joint_config(&tasks, &runs.path().join("uncertainty"))
    };
    let records = train_records(&run(&config));
    assert_eq!(
        records.len(),
        23,
        "two tasks, 12 steps, the last one topic's alone"
    );
    for r in &records {
        let s = r.log_variance.unwrap();
        assert!(r.loss.is_finite(), "{r:?}");
        // The log's numbers read back within a unit in the last place.
        let w = r.loss_weight.unwrap();
        assert!((w - (-s).exp()).abs() <= 1e-15 * w, "{r:?}");
        assert_eq!(r.grad_weight, None, "sum logs no gradient weights");
    }
    assert_eq!(records[0].log_variance, Some(0.0));
    assert!(records.iter().any(|r| r.log_variance.unwrap().abs() > 1e-4));
    let again = TrainConfig {
        output: runs.path().join("uncertainty-again"),
        ..config.clone()
    };
    run(&again);
    assert_eq!(
        log_without_seconds(&again.output),
        log_without_seconds(&config.output),
        "the same seed gives the same run"
    );

    // DWA over three epochs, one record per task and epoch (the epoch's mean loss): equal
    // weights in the first two epochs, then 2 softmax((L1 / L0) / 2).
    let config = TrainConfig {
        loss_weighting: LossWeighting::Dwa { temperature: 2.0 },
        epochs: 3,
        log_every: 1000,
        ..joint_config(&tasks, &runs.path().join("dwa"))
    };
    let records = train_records(&run(&config));
    let epoch = |e: usize| -> Vec<&Train> { records.iter().filter(|r| r.epoch == e).collect() };
    assert_eq!(records.len(), 6, "{records:?}");
    for r in epoch(0).into_iter().chain(epoch(1)) {
        assert_eq!(r.loss_weight, Some(1.0), "{r:?}");
    }
    let losses = |e: usize| epoch(e).iter().map(|r| r.loss).collect::<Vec<_>>();
    let expected = dwa_weights(&losses(0), &losses(1), 2.0).unwrap();
    let logged: Vec<f64> = epoch(2).iter().map(|r| r.loss_weight.unwrap()).collect();
    assert!(
        close(&logged, &expected),
        "{logged:?} vs {expected:?} from epoch means {:?} {:?}",
        losses(0),
        losses(1)
    );
    assert!((logged.iter().sum::<f64>() - 2.0).abs() < 1e-12);

    // RLW: each step's seeded softmax of normal draws, summing to 1.
    let config = TrainConfig {
        loss_weighting: LossWeighting::Rlw,
        ..joint_config(&tasks, &runs.path().join("rlw"))
    };
    let records = train_records(&run(&config));
    let steps = by_step(&records);
    assert_eq!(steps.len(), 12);
    for step in steps.iter().filter(|s| s.len() == 2) {
        let index = step[0].step - 1;
        let expected = LossWeighting::Rlw
            .weights(&WeightingState::default(), 2, config.seed, index)
            .unwrap();
        let logged: Vec<f64> = step.iter().map(|r| r.loss_weight.unwrap()).collect();
        assert!(
            close(&logged, &expected),
            "step {index}: {logged:?} vs {expected:?}"
        );
        assert!(step.iter().all(|r| r.loss.is_finite()));
    }
}

#[test]
fn gradnorm_learns_weights_after_the_first_epoch_and_resumes_exactly() {
    let (_data, tasks) = data();
    let runs = tempfile::tempdir().unwrap();
    // Stopped mid second epoch, where GradNorm's weights learn from the first epoch's losses.
    let config = TrainConfig {
        loss_weighting: LossWeighting::GradNorm { alpha: 1.5 },
        epochs: 2,
        checkpoint_every: 5,
        ..joint_config(&tasks, &runs.path().join("run"))
    };
    assert_resumes_exactly(&config, 20);
    let records = train_records(&read_records(&config.output.join("metrics.jsonl")).unwrap());
    for step in by_step(&records) {
        let w: Vec<f64> = step.iter().map(|r| r.loss_weight.unwrap()).collect();
        assert!(
            step.iter()
                .all(|r| r.loss.is_finite() && r.grad_weight.is_none())
        );
        if step[0].epoch == 0 || step[0].step == 13 {
            assert!(w.iter().all(|&w| w == 1.0), "step {}: {w:?}", step[0].step);
        } else if step.len() == 2 {
            assert!((w[0] + w[1] - 2.0).abs() < 1e-12, "{w:?}");
            assert!(w[0] != 1.0, "step {}: {w:?}", step[0].step);
        }
    }
    let state = std::fs::read_to_string(config.output.join("checkpoint/state.json")).unwrap();
    assert!(
        state.contains("gradnorm_logits") && state.contains("initial_losses"),
        "{state}"
    );
}

#[test]
fn gradient_aggregations_train_and_log_their_weights() {
    let (_data, tasks) = data();
    let runs = tempfile::tempdir().unwrap();
    let methods = [
        GradAggregation::PcGrad,
        GradAggregation::Mgda,
        GradAggregation::CaGrad { c: 0.5 },
        GradAggregation::ImtlG,
        GradAggregation::UpGrad,
    ];
    for method in methods {
        let name = method.setting();
        let config = TrainConfig {
            grad_aggregation: method,
            ..joint_config(&tasks, &runs.path().join(&name))
        };
        let records = train_records(&run(&config));
        assert_eq!(records.len(), 23, "{name}");
        for pair in by_step(&records) {
            assert!(pair.iter().all(|r| r.loss.is_finite()), "{name}: {pair:?}");
            let w: Vec<f64> = pair.iter().map(|r| r.grad_weight.unwrap()).collect();
            let sum: f64 = w.iter().sum();
            let says = match method {
                // Each projected gradient keeps its own with weight 1 and gains others'.
                GradAggregation::PcGrad => w.iter().all(|&c| c >= 1.0),
                // A convex combination.
                GradAggregation::Mgda => {
                    (sum - 1.0).abs() < 1e-9 && w.iter().all(|c| (0.0..=1.0).contains(c))
                }
                GradAggregation::CaGrad { .. } => w.iter().all(|&c| c > 0.0),
                GradAggregation::ImtlG => (sum - 1.0).abs() < 1e-9,
                // Each projection onto the dual cone keeps at least its own 1/k share.
                GradAggregation::UpGrad => w.iter().all(|&c| c >= 0.5 - 1e-12),
                GradAggregation::Sum => unreachable!(),
            };
            assert!(says, "{name}: weights {w:?} at step {}", pair[0].step);
            assert!(pair.iter().all(|r| r.loss_weight.is_none()));
        }
    }
}

#[test]
fn three_tasks_train_with_accumulation_frozen_layers_and_each_aggregation() {
    let (data_dir, tasks) = data();
    let third = data_dir.path().join("third");
    tasks::write_task(
        &third,
        &[
            ("low", &["small", "few", "less"]),
            ("high", &["big", "many", "more"]),
        ],
        96,
        3,
    );
    let mut tasks = tasks.to_vec();
    tasks.push(format!("third={}", third.display()));
    let runs = tempfile::tempdir().unwrap();
    for method in ["pcgrad", "mgda", "cagrad", "imtl-g", "upgrad"] {
        let config = TrainConfig {
            grad_aggregation: method.parse().unwrap(),
            loss_weighting: LossWeighting::Rlw,
            grad_accumulation: 2,
            freeze: vec![mtl_model::ModelPart::BottomLayers(1)],
            ..joint_config(&tasks, &runs.path().join(method))
        };
        let records = train_records(&run(&config));
        let steps = by_step(&records);
        // Each epoch ends when topic (12 batches) runs out: 34 batches, 6 per step.
        assert_eq!(steps.len(), 6, "{method}");
        for step in steps {
            assert_eq!(step.len(), 3, "{method}: {step:?}");
            assert!(step.iter().all(|r| r.loss.is_finite()), "{method}");
            let w: Vec<f64> = step.iter().map(|r| r.grad_weight.unwrap()).collect();
            // MGDA's convex combination may leave a task out; IMTL-G's weights may be
            // negative; the others keep every task.
            let positive = match method {
                "mgda" => w.iter().all(|&c| (0.0..=1.0).contains(&c)),
                "imtl-g" => w.iter().all(|c| c.is_finite()),
                _ => w.iter().all(|&c| c > 0.0),
            };
            assert!(positive, "{method}: {w:?}");
            let sum: f64 = w.iter().sum();
            if method == "mgda" || method == "imtl-g" {
                assert!((sum - 1.0).abs() < 1e-9, "{method}: {w:?}");
            }
        }
    }
}

/// Trains `config` to the end, and again stopped (by a panicking observer) right after the
/// checkpoint of step `stop_at`, then resumed: both end the same.
fn assert_resumes_exactly(config: &TrainConfig, stop_at: usize) {
    let device = Backend::default_compiled().device(0).unwrap();
    let whole = run(config);
    let stopped = TrainConfig {
        output: config.output.with_extension("stopped"),
        ..config.clone()
    };
    let result = catch_unwind(AssertUnwindSafe(|| {
        train(
            &stopped,
            &device,
            Start::New { overwrite: false },
            &mut |event| {
                if let Event::Checkpoint { step } = event
                    && step == stop_at
                {
                    panic!("stopped at the checkpoint of step {step}");
                }
            },
        )
    }));
    assert!(result.is_err(), "the run did not stop at step {stop_at}");
    train(&stopped, &device, Start::Resume, &mut mtl_train::Silent).unwrap();
    assert_eq!(
        log_without_seconds(&stopped.output),
        log_without_seconds(&config.output),
        "the resumed log reads as one run"
    );
    assert_eq!(whole.len(), log_without_seconds(&stopped.output).len());
    let bytes = |run: &Path, file: &str| std::fs::read(run.join(file)).unwrap();
    assert!(
        bytes(&config.output, "best/model.safetensors")
            == bytes(&stopped.output, "best/model.safetensors"),
        "best/ differs"
    );
    let (whole_weights, resumed_weights) = (
        checkpoint_weights(&config.output),
        checkpoint_weights(&stopped.output),
    );
    assert!(whole_weights.len() > 10);
    for ((name, a), (_, b)) in whole_weights.iter().zip(&resumed_weights) {
        assert!(a == b, "the final {name} differs");
    }
    let state = |run: &Path| {
        let text = String::from_utf8(bytes(run, "checkpoint/state.json")).unwrap();
        let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
        value.as_object_mut().unwrap().remove("seconds");
        value.as_object_mut().unwrap().remove("log_bytes");
        value
    };
    assert_eq!(state(&config.output), state(&stopped.output));
}

#[test]
fn a_resumed_run_continues_exactly_with_uncertainty_weighting_and_pcgrad() {
    let (_data, tasks) = data();
    let runs = tempfile::tempdir().unwrap();
    let config = TrainConfig {
        loss_weighting: LossWeighting::Uncertainty,
        grad_aggregation: GradAggregation::PcGrad,
        epochs: 2,
        checkpoint_every: 5,
        ..joint_config(&tasks, &runs.path().join("run"))
    };
    assert_resumes_exactly(&config, 15);
    let state = std::fs::read_to_string(config.output.join("checkpoint/state.json")).unwrap();
    assert!(
        state.contains("log_variances") && state.contains("adam"),
        "{state}"
    );
}

#[test]
fn a_resumed_run_continues_exactly_with_dwa_and_upgrad() {
    let (_data, tasks) = data();
    let runs = tempfile::tempdir().unwrap();
    // Stopped in the third epoch, where DWA's weights come from the first two and the
    // epoch's partial sums are in the checkpoint.
    let config = TrainConfig {
        loss_weighting: LossWeighting::Dwa { temperature: 2.0 },
        grad_aggregation: GradAggregation::UpGrad,
        epochs: 3,
        checkpoint_every: 5,
        ..joint_config(&tasks, &runs.path().join("run"))
    };
    assert_resumes_exactly(&config, 30);
    let state = std::fs::read_to_string(config.output.join("checkpoint/state.json")).unwrap();
    assert!(state.contains("epoch_losses"), "{state}");
}
