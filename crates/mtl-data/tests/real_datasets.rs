//! Loads the real extracted data sets (`cargo xtask datasets`, which `cargo xtask test` runs
//! first) and checks them against `datasets/manifest.json`. Fails, saying how to fetch them,
//! when they (or the all-MiniLM-L6-v2 tokenizer) are missing, rather than passing unchecked.

use std::collections::HashSet;
use std::path::PathBuf;

use mtl_bert::BertTokenizer;
use mtl_data::{
    EpochMode, MultiTaskLoader, PlanConfig, Split, TaskData, TaskSampler, TaskSource, TokenizedTask,
};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn datasets_dir() -> PathBuf {
    std::env::var_os("MTL_DATASETS_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| workspace().join("datasets"), PathBuf::from)
}

/// The task config of a data set, its labels taken from the manifest.
///
/// # Panics
/// When the data set has not been extracted, with how to do it.
fn task(name: &str, manifest: &serde_json::Value) -> TaskSource {
    let dir = datasets_dir().join(name);
    for split in Split::ALL {
        let file = dir.join(format!("{}.jsonl", split.name()));
        assert!(
            file.is_file(),
            "{} is missing: run `cargo xtask datasets` (or `cargo xtask test`, which fetches the \
             data sets first)",
            file.display()
        );
    }
    let labels = manifest["datasets"][name]["labels"]
        .as_array()
        .unwrap_or_else(|| panic!("datasets/manifest.json lists no labels for {name}"));
    let labels = labels.iter().map(|l| l.as_str().unwrap().to_owned());
    TaskSource {
        id_field: Some("id".into()),
        ..TaskSource::new(name, dir, labels)
    }
}

fn manifest() -> serde_json::Value {
    let path = workspace().join("datasets/manifest.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn bbc_and_tweets_load_with_the_manifest_counts() {
    let manifest = manifest();
    for name in ["bbc", "tweets"] {
        let config = task(name, &manifest);
        let mut ids = HashSet::new();
        let mut texts = HashSet::new();
        for split in Split::ALL {
            let data = TaskData::load(&config, split)
                .unwrap()
                .unwrap_or_else(|| panic!("{name} has no {split} file"));
            let counts = &manifest["datasets"][name]["counts"]["splits"][split.name()];
            let expected: Vec<usize> = config
                .labels
                .iter()
                .map(|l| counts[l].as_u64().unwrap() as usize)
                .collect();
            assert_eq!(data.label_counts(), expected, "{name} {split}");
            for example in &data.examples {
                assert!(ids.insert(example.id.clone()), "{} twice", example.id);
                assert!(texts.insert(example.text.clone()), "a text of {name} twice");
            }
        }
    }
}

#[test]
fn bbc_and_tweets_batch_through_the_real_tokenizer() {
    let manifest = manifest();
    let (bbc, tweets) = (task("bbc", &manifest), task("tweets", &manifest));
    let cache =
        std::env::var_os("MTL_CACHE_DIR").map_or_else(|| workspace().join(".cache"), PathBuf::from);
    let tokenizer_file = cache.join("models/all-MiniLM-L6-v2/tokenizer.json");
    assert!(
        tokenizer_file.is_file(),
        "{} is missing: run `cargo xtask fetch-model` (or `cargo xtask test`, which fetches it \
         first)",
        tokenizer_file.display()
    );
    let tokenizer = BertTokenizer::from_file(&tokenizer_file, 128).unwrap();
    let tasks = vec![
        TokenizedTask::load(&bbc, Split::Valid, &tokenizer).unwrap(),
        TokenizedTask::load(&tweets, Split::Valid, &tokenizer).unwrap(),
    ];
    let sizes: Vec<usize> = tasks.iter().map(TokenizedTask::len).collect();
    let config = PlanConfig {
        batch_size: 32,
        sampler: TaskSampler::RoundRobin,
        epoch_mode: EpochMode::UntilAllExhausted,
        bucket_window: 20,
        ..PlanConfig::default()
    };
    let loader = MultiTaskLoader::new(tasks, config).unwrap();
    let mut seen = vec![0; 2];
    for batch in loader.epoch(0).unwrap() {
        assert!(batch.tokens.seq_len <= 128);
        assert_eq!(batch.tokens.batch_size, batch.labels.len());
        seen[batch.task] += batch.examples.len();
    }
    assert_eq!(seen, sizes);
    // Headline + lead paragraphs are longer than tweets.
    let mean = |t: &TokenizedTask| t.lengths().iter().sum::<usize>() as f64 / t.len() as f64;
    assert!(mean(&loader.tasks()[0]) > mean(&loader.tasks()[1]));
}
