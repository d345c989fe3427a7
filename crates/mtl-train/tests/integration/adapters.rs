//! LoRA adapters through the trainer library, on the tiny fixture model: a run trains only the
//! adapters and heads (the saved encoder is the fixture's, to the bit), saves each task's set
//! in PEFT's format, and `init` adds a task with its own set, leaving the first task's
//! predictions unchanged to the bit.

use crate::fixtures::tiny_dir;
use crate::tasks::data;

use mtl_bert::{Backend, EncodeOptions, LoraAdapter, SentenceEncoder, peft};
use mtl_model::{ADAPTERS_DIR, AdapterScope, MultiTaskClassifier};
use mtl_train::{Adapter, Start, TrainConfig, train};

use crate::library::tiny_config;

const TEXTS: [&str; 4] = ["team win game", "new phone market", "the play", "tech"];

fn probabilities(classifier: &MultiTaskClassifier, task: &str) -> Vec<Vec<f32>> {
    classifier
        .predict(&TEXTS, Some(task), 8)
        .unwrap()
        .into_iter()
        .map(|row| row[0].probabilities.clone())
        .collect()
}

#[test]
fn adapters_train_alone_and_a_task_added_with_its_own_leaves_the_others_unchanged() {
    let (_data, tasks) = data();
    let runs = tempfile::tempdir().unwrap();
    let device = Backend::default_compiled().device(0).unwrap();
    let adapter = Adapter::Lora {
        rank: 4,
        alpha: 8.0,
    };
    let first = TrainConfig {
        adapter,
        checkpoint_every: 0,
        ..tiny_config(&tasks[..1], &runs.path().join("first"))
    };
    train(
        &first,
        &device,
        Start::New { overwrite: false },
        &mut mtl_train::Silent,
    )
    .unwrap();
    let saved = runs.path().join("first/best");

    // The encoder is the fixture's, to the bit; the task's adapter set trained.
    let embed = |dir: &std::path::Path| {
        SentenceEncoder::load(dir, &device)
            .unwrap()
            .encode(&TEXTS, &EncodeOptions::default())
            .unwrap()
            .values
    };
    assert_eq!(embed(&saved), embed(&tiny_dir()));
    let set = saved.join(ADAPTERS_DIR).join("topic");
    assert!(set.join(peft::CONFIG_FILE).is_file() && set.join(peft::WEIGHTS_FILE).is_file());
    let classifier = MultiTaskClassifier::load(&saved, &device).unwrap();
    let config = classifier.config().adapter.unwrap();
    assert_eq!((config.lora.rank, config.lora.alpha), (4, 8.0));
    assert_eq!(config.scope, AdapterScope::PerTask);
    let loaded = LoraAdapter::load_peft(&set, classifier.bert_config(), &device).unwrap();
    let b: Vec<f32> = loaded.layers[0]
        .query
        .as_ref()
        .unwrap()
        .lora_b
        .weight
        .val()
        .into_data()
        .try_into_vec()
        .unwrap();
    assert!(b.iter().any(|v| *v != 0.0), "the adapter did not train");
    assert!(b.iter().all(|v| v.is_finite()));
    let before = probabilities(&classifier, "topic");

    // A second task with its own set, from the saved model: the first task's outputs stay.
    let second = TrainConfig {
        model: "default".into(),
        init: Some(saved.clone()),
        adapter,
        checkpoint_every: 0,
        ..tiny_config(&tasks[1..], &runs.path().join("second"))
    };
    train(
        &second,
        &device,
        Start::New { overwrite: false },
        &mut mtl_train::Silent,
    )
    .unwrap();
    let both = MultiTaskClassifier::load(runs.path().join("second/best"), &device).unwrap();
    assert_eq!(both.config().task_names(), ["sentiment", "topic"]);
    assert_eq!(probabilities(&both, "topic"), before);
    assert!(
        runs.path()
            .join("second/best")
            .join(ADAPTERS_DIR)
            .join("sentiment")
            .join(peft::WEIGHTS_FILE)
            .is_file()
    );

    // Other adapters than the saved model's are refused, naming both.
    let other = TrainConfig {
        adapter: Adapter::Lora {
            rank: 8,
            alpha: 8.0,
        },
        output: runs.path().join("third"),
        ..second
    };
    let error = train(
        &other,
        &device,
        Start::New { overwrite: false },
        &mut mtl_train::Silent,
    )
    .unwrap_err();
    // The message and its causes.
    let mut error: &dyn std::error::Error = &error;
    let mut messages = vec![error.to_string()];
    while let Some(source) = error.source() {
        messages.push(source.to_string());
        error = source;
    }
    let error = messages.join(": ");
    assert!(
        error.contains("rank 4") && error.contains("rank 8"),
        "{error}"
    );
}
