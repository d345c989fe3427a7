//! `mtl similarity` end to end on the tiny model: a symmetric matrix with a unit diagonal
//! that matches the cosine of the library's embeddings.

use crate::common;

use common::{assert_fails_with, library_embeddings, mtl, tiny_dir};
use mtl_bert::EncodeOptions;

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

#[test]
fn json_matrix_is_symmetric_with_unit_diagonal() {
    let texts = [
        "the cat sat on the mat",
        "the dog sat",
        "market price news",
        "",
    ];
    let output = mtl()
        .args(["similarity", "--json", "-m"])
        .arg(tiny_dir())
        .args(texts)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["texts"], serde_json::json!(texts));
    let matrix: Vec<Vec<f32>> = serde_json::from_value(json["similarity"].clone()).unwrap();
    let owned: Vec<String> = texts.iter().map(|t| t.to_string()).collect();
    let embeddings = library_embeddings(&tiny_dir(), &owned, &EncodeOptions::default());
    assert_eq!(matrix.len(), texts.len());
    for i in 0..texts.len() {
        assert_eq!(matrix[i].len(), texts.len());
        assert!(
            (matrix[i][i] - 1.0).abs() < 1e-6,
            "diagonal {}",
            matrix[i][i]
        );
        for j in 0..texts.len() {
            assert_eq!(matrix[i][j], matrix[j][i], "symmetric at {i},{j}");
            let expected = cosine(&embeddings[i], &embeddings[j]);
            assert!(
                (matrix[i][j] - expected).abs() < 1e-5,
                "{i},{j}: {} vs {expected}",
                matrix[i][j]
            );
        }
    }
}

#[test]
fn table_lists_texts_and_values() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("texts.txt");
    std::fs::write(&input, "the cat sat\nthe dog sat\nnews\n").unwrap();
    let output = mtl()
        .args(["similarity", "-m"])
        .arg(tiny_dir())
        .arg("--input")
        .arg(&input)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let table = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        &lines[..4],
        ["1  the cat sat", "2  the dog sat", "3  news", ""]
    );
    assert_eq!(
        lines[4].split_whitespace().collect::<Vec<_>>(),
        ["1", "2", "3"]
    );
    for (i, line) in lines[5..8].iter().enumerate() {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells.len(), 4, "{line}");
        assert_eq!(cells[0], (i + 1).to_string());
        assert_eq!(cells[i + 1], "1.0000", "{line}");
    }
}

#[test]
fn stdin_works_and_one_text_is_an_error() {
    let output = mtl()
        .args(["similarity", "--json", "-m"])
        .arg(tiny_dir())
        .write_stdin("the cat\nthe dog\n")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["texts"], serde_json::json!(["the cat", "the dog"]));

    let output = mtl()
        .args(["similarity", "-m"])
        .arg(tiny_dir())
        .arg("alone")
        .output()
        .unwrap();
    assert_fails_with(&output, "at least two texts, got 1");
}
