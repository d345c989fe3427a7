//! The trainer as a library, on the tiny fixture model and small generated data sets: what a
//! run reports to its observer, the cache of a frozen encoder's embeddings, and the typed
//! errors of bad input. The `mtl train` command's own behaviour (flags, files, kills and
//! resumes) is tested in `crates/mtl/tests/integration/train.rs`.

use crate::compare;
use crate::fixtures;
use crate::tasks;

use std::path::Path;

use burn::module::Module;
use compare::max_abs_diff;
use fixtures::tiny_dir;
use mtl_bert::Backend;
use mtl_model::{ModelPart, MtlConfig, MultiTaskClassifier, TaskConfig};
use mtl_train::internals::EmbeddingCache;
use mtl_train::{Error, Event, Start, TaskSpec, TrainConfig, train};
use tasks::data;

/// A short run of the tiny model on `tasks` (`NAME=DIR`) into `output`: small batches and
/// sequences, two epochs.
pub(crate) fn tiny_config(tasks: &[String], output: &Path) -> TrainConfig {
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
        epochs: 2,
        batch_size: 8,
        max_seq_length: 32,
        ..TrainConfig::default()
    }
}

#[test]
fn bad_data_is_a_typed_error_naming_file_and_line_before_anything_is_written() {
    let (data_dir, tasks) = data();
    let train_file = data_dir.path().join("topic/train.jsonl");
    let mut text = std::fs::read_to_string(&train_file).unwrap();
    text.push_str("{\"text\": \"no label here\"}\n");
    std::fs::write(&train_file, &text).unwrap();
    let line = text.lines().count();
    let runs = tempfile::tempdir().unwrap();
    let run = runs.path().join("run");
    let device = Backend::default_compiled().device(0).unwrap();
    let error = train(
        &tiny_config(&tasks, &run),
        &device,
        Start::New { overwrite: false },
        &mut mtl_train::Silent,
    )
    .unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, Error::Data(mtl_data::Error::MissingField { .. })),
        "{error:?}"
    );
    assert!(
        message.contains(&format!("{}:{line}:", train_file.display())),
        "{message}"
    );
    assert!(!run.exists(), "the run directory was made");

    let bad = TrainConfig {
        epochs: 0,
        ..tiny_config(&tasks, &run)
    };
    let error = train(
        &bad,
        &device,
        Start::New { overwrite: false },
        &mut mtl_train::Silent,
    )
    .unwrap_err();
    assert!(
        matches!(&error, Error::Config(m) if m == "epochs must be at least 1"),
        "{error:?}"
    );
    assert!(!run.exists(), "the run directory was made");
}

#[test]
fn cached_embeddings_give_the_logits_of_the_frozen_model() {
    let (data_dir, _) = data();
    let device = Backend::default_compiled().device(0).unwrap().autodiff();
    let config = MtlConfig::new(vec![TaskConfig::new("topic", &["sport", "tech"])]);
    let classifier =
        MultiTaskClassifier::from_pretrained(tiny_dir(), config.clone(), 0, &device).unwrap();
    let model = classifier
        .model
        .clone()
        .freeze(&ModelPart::Encoder, &config)
        .unwrap();
    let task = mtl_data::TaskSource::new("topic", data_dir.path().join("topic"), ["sport", "tech"]);
    let tokens =
        mtl_data::TokenizedTask::load(&task, mtl_data::Split::Train, classifier.tokenizer())
            .unwrap();
    let cache =
        EmbeddingCache::compute(&model, std::slice::from_ref(&tokens), 7, &device, |_| {}).unwrap();
    let valid = model.valid();
    let plain = device.clone().without_autodiff();
    let examples: Vec<usize> = (0..tokens.len()).step_by(3).collect();
    let batch = tokens.batch(0, &examples);
    let direct = valid.forward(&batch.tokens.to_input(&plain), 0);
    let cached = valid.head_logits(cache.batch(0, &examples).to_device(&plain), 0, None);
    let values = |t: burn::prelude::Tensor<2>| t.into_data().try_into_vec::<f32>().unwrap();
    let difference = max_abs_diff(&values(direct), &values(cached));
    assert!(
        difference <= 1e-5,
        "logits differ by {difference} (NaN if either is not finite)"
    );
}

#[test]
fn the_trainer_library_reports_its_progress_to_an_observer() {
    let (_data, tasks) = data();
    let runs = tempfile::tempdir().unwrap();
    let config = TrainConfig {
        checkpoint_every: 0,
        unfreeze_every: Some(1),
        ..tiny_config(&tasks, &runs.path().join("run"))
    };
    let device = Backend::default_compiled().device(0).unwrap();
    let mut events = Vec::new();
    let summary = train(
        &config,
        &device,
        Start::New { overwrite: false },
        &mut |event| events.push(event),
    )
    .unwrap();
    let Event::Started {
        tasks, total_steps, ..
    } = &events[0]
    else {
        panic!("the first event is not Started: {:?}", events[0]);
    };
    assert_eq!(
        tasks[0].label_counts.iter().map(|(_, n)| n).sum::<usize>(),
        96
    );
    assert_eq!(*total_steps, summary.steps);
    let count = |f: fn(&Event) -> bool| events.iter().filter(|e| f(e)).count();
    assert_eq!(count(|e| matches!(e, Event::Step { .. })), summary.steps);
    assert_eq!(count(|e| matches!(e, Event::EpochStarted { .. })), 2);
    assert_eq!(count(|e| matches!(e, Event::EpochFinished { .. })), 2);
    assert_eq!(count(|e| matches!(e, Event::Evaluated { .. })), 2);
    assert_eq!(count(|e| matches!(e, Event::Checkpoint { .. })), 2);
    let last_step = events.iter().rev().find_map(|e| match e {
        Event::Step { step, .. } => Some(*step),
        _ => None,
    });
    assert_eq!(last_step, Some(summary.steps));
    // What trains is said once per epoch.
    let unfreezing: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::Note(note) if note.contains("gradual unfreezing") => Some(note.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        unfreezing,
        [
            "epoch 1: gradual unfreezing: top 0 of 2 encoder layers train",
            "epoch 2: gradual unfreezing: top 1 of 2 encoder layers train"
        ]
    );
}

/// Asks the run to stop once it has seen step `at`.
struct StopAt {
    at: usize,
    seen: usize,
}

impl mtl_train::Observer for StopAt {
    fn event(&mut self, event: Event) {
        if let Event::Step { step, .. } = event {
            self.seen = step;
        }
    }

    fn should_stop(&mut self) -> bool {
        self.seen >= self.at
    }
}

#[test]
fn an_observer_stops_a_run_at_a_checkpoint_and_the_resumed_run_ends_as_one_run() {
    let (_data, tasks) = data();
    let runs = tempfile::tempdir().unwrap();
    let device = Backend::default_compiled().device(0).unwrap();
    let whole = tiny_config(&tasks, &runs.path().join("whole"));
    let summary = train(
        &whole,
        &device,
        Start::New { overwrite: false },
        &mut mtl_train::Silent,
    )
    .unwrap();
    let per_epoch = summary.steps / 2;
    // Mid-epoch, and at the last step of the first epoch (stopped after its evaluation).
    for (name, at, stopped_at) in [("mid", 5, 5), ("end", per_epoch, per_epoch)] {
        let config = tiny_config(&tasks, &runs.path().join(name));
        let error = train(
            &config,
            &device,
            Start::New { overwrite: false },
            &mut StopAt { at, seen: 0 },
        )
        .unwrap_err();
        let Error::Interrupted { step, run_dir } = &error else {
            panic!("{name}: not an interruption: {error}");
        };
        assert_eq!((*step, run_dir), (stopped_at, &config.output), "{name}");
        assert!(error.to_string().contains("checkpointed"), "{error}");
        let resumed = train(&config, &device, Start::Resume, &mut mtl_train::Silent).unwrap();
        assert_eq!(resumed.steps, summary.steps, "{name}");
        let bytes = |run: &Path| std::fs::read(run.join("best/model.safetensors")).unwrap();
        assert!(
            bytes(&config.output) == bytes(&whole.output),
            "{name}: the resumed run's best model differs"
        );
    }
}
