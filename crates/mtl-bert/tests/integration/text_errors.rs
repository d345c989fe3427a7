//! Token ids the model's embedding tables lack, and non-finite embeddings, are typed errors
//! naming the files or the text: never an out-of-bounds lookup, a panic or a NaN embedding.

use crate::common;

use common::{copy_dir, fixtures, rewrite_safetensors};
use mtl_bert::TextError;
use mtl_bert::{Backend, BertModel, EncodeOptions, Error, ModelDir, SentenceEncoder};

fn tiny_dir() -> std::path::PathBuf {
    fixtures().join("tiny-bert")
}

fn device() -> mtl_bert::burn::prelude::Device {
    Backend::default_compiled().device(0).unwrap()
}

/// Sets `field` of `dir/config.json` to `value`.
fn edit_config(dir: &std::path::Path, field: &str, value: u64) {
    let path = dir.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config[field] = value.into();
    std::fs::write(&path, config.to_string()).unwrap();
}

#[test]
fn load_refuses_a_tokenizer_larger_than_vocab_size() {
    let dir = copy_dir(&tiny_dir());
    edit_config(dir.path(), "vocab_size", 100);
    let err = SentenceEncoder::load(dir.path(), &device()).unwrap_err();
    let message = err.to_string();
    match err {
        Error::VocabularyMismatch {
            tokenizer,
            config,
            tokens,
            max_id,
            vocab_size,
        } => {
            assert_eq!(tokenizer, dir.path().join("tokenizer.json"));
            assert_eq!(config, dir.path().join("config.json"));
            assert_eq!((tokens, max_id, vocab_size), (155, 154, 100));
        }
        other => panic!("{other}"),
    }
    for part in [
        "tokenizer.json",
        "config.json",
        "155 tokens",
        "vocab_size to 100",
    ] {
        assert!(message.contains(part), "{part:?} missing from: {message}");
    }

    // The vocab.txt fallback is checked alike.
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    let err = SentenceEncoder::load(dir.path(), &device()).unwrap_err();
    let Error::VocabularyMismatch { tokenizer, .. } = &err else {
        panic!("{err}")
    };
    assert!(tokenizer.ends_with("vocab.txt"), "{err}");
}

/// An encoder whose tables have `vocab_size` rows with the tiny model's full tokenizer,
/// assembled by hand (past `load`'s check), as a library caller can.
fn encoder_with_vocab_size(vocab_size: usize) -> SentenceEncoder {
    let dir = ModelDir::new(tiny_dir()).unwrap();
    let mut config = dir.config().unwrap();
    config.vocab_size = vocab_size;
    let defaults = dir.sentence_defaults(&config).unwrap();
    let tokenizer = dir.tokenizer(defaults.max_seq_length).unwrap();
    let model = BertModel::init(&config, false, &device());
    SentenceEncoder::new(model, tokenizer, config, defaults)
}

#[test]
fn encode_refuses_ids_beyond_vocab_size_naming_the_text() {
    let encoder = encoder_with_vocab_size(100);
    let options = EncodeOptions::default();
    let fine = encoder.encode(&["the cat", "the dog"], &options).unwrap();
    assert_eq!(fine.len(), 2);
    // "9" is id 118.
    let err = encoder
        .encode(&["the cat", "the dog", "the cat 9"], &options)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "text at index 2: token \"9\" has id 118, but the model's vocab_size is 100 (ids 0 to \
         99); the tokenizer does not belong to this model"
    );
    assert!(
        matches!(
            err,
            Error::Text {
                index: 2,
                problem: TextError::TokenOutOfRange { id: 118, .. }
            }
        ),
        "{err}"
    );
}

#[test]
fn encode_refuses_non_finite_embeddings_naming_the_first_text() {
    let dir = copy_dir(&tiny_dir());
    // Row 41 of the word embeddings is "dog": only texts with that word turn NaN.
    rewrite_safetensors(&dir.path().join("model.safetensors"), |tensors| {
        let words = tensors
            .iter_mut()
            .find(|t| t.name == "embeddings.word_embeddings.weight")
            .unwrap();
        let width = words.shape[1] * 4;
        for byte in words.data[41 * width..42 * width].chunks_exact_mut(4) {
            byte.copy_from_slice(&f32::NAN.to_le_bytes());
        }
    });
    let encoder = SentenceEncoder::load(dir.path(), &device()).unwrap();
    let options = EncodeOptions {
        batch_size: 2,
        ..EncodeOptions::default()
    };
    encoder.encode(&["the cat", "good"], &options).unwrap();
    let texts = ["the cat", "good", "a dog", "the dog and the cat"];
    let err = encoder.encode(&texts, &options).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Text {
                index: 2,
                problem: TextError::NonFinite
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "text at index 2: the model produced a non-finite embedding (NaN or infinity); its \
         weights may be corrupt"
    );
}
