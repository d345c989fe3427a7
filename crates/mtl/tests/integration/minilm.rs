//! `mtl embed` and `mtl similarity` with the real all-MiniLM-L6-v2 (`cargo xtask fetch-model`
//! puts it in the cache): the command's output equals the library's, and similar sentences
//! score higher than unrelated ones.

use crate::common;

use common::{assert_rows_close, library_embeddings, minilm_dir, mtl, parse_jsonl, parse_npy};
use mtl_bert::EncodeOptions;

const SENTENCES: [&str; 4] = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "",
];

#[test]
fn embed_equals_the_library_and_is_normalised() {
    let dir = minilm_dir();
    let texts: Vec<String> = SENTENCES.iter().map(|s| s.to_string()).collect();
    let expected = library_embeddings(&dir, &texts, &EncodeOptions::default());

    let output = mtl()
        .args(["embed", "--model"])
        .arg(&dir)
        .args(SENTENCES)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let rows: Vec<Vec<f32>> = parse_jsonl(&output.stdout)
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    assert_eq!(rows[0].len(), 384);
    assert_rows_close(&rows, &expected, 1e-6);
    for row in &rows {
        let norm: f32 = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
    }

    // No --model: the default model from the cache (cargo sets MTL_CACHE_DIR), from stdin, npy.
    let output = mtl()
        .args(["embed", "--format", "npy"])
        .write_stdin(texts.iter().map(|t| format!("{t}\n")).collect::<String>())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let (shape, values) = parse_npy(&output.stdout);
    assert_eq!(shape, (4, 384));
    let rows: Vec<Vec<f32>> = values.chunks(384).map(<[f32]>::to_vec).collect();
    assert_rows_close(&rows, &expected, 1e-6);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("all-MiniLM-L6-v2 (dim 384, pooling mean, normalize true, max 256 tokens)"),
        "{stderr}"
    );
}

#[test]
fn similar_sentences_score_higher() {
    let output = mtl()
        .args(["similarity", "--json", "--model"])
        .arg(minilm_dir())
        .args(&SENTENCES[..3])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let m: Vec<Vec<f32>> = serde_json::from_value(json["similarity"].clone()).unwrap();
    for (i, row) in m.iter().enumerate() {
        assert!((row[i] - 1.0).abs() < 1e-6);
    }
    assert!(m[0][1] > 0.6, "{m:?}");
    assert!(m[0][1] > m[0][2] + 0.4 && m[0][1] > m[1][2] + 0.4, "{m:?}");
}
