//! `mtl embed` end to end on the tiny model: its output equals the library's embeddings in
//! every format and from every input, and bad input fails with a clear message.

mod common;

use common::{
    assert_fails_with, assert_rows_close, library_embeddings, mtl, parse_jsonl, parse_npy,
    sample_texts, tiny_dir,
};
use mtl_bert::{EncodeOptions, Pooling};

fn tiny() -> String {
    tiny_dir().display().to_string()
}

fn lines(texts: &[String]) -> String {
    texts.iter().map(|t| format!("{t}\n")).collect()
}

#[test]
fn arguments_give_the_librarys_embeddings_in_order() {
    let texts = sample_texts();
    let output = mtl()
        .args(["embed", "--model", &tiny()])
        .args(&texts)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let rows = parse_jsonl(&output.stdout);
    let got_texts: Vec<String> = rows.iter().map(|(t, _)| t.clone()).collect();
    assert_eq!(got_texts, texts);
    let embeddings: Vec<Vec<f32>> = rows.into_iter().map(|(_, e)| e).collect();
    let expected = library_embeddings(&tiny_dir(), &texts, &EncodeOptions::default());
    assert_eq!(embeddings[0].len(), 32);
    assert_rows_close(&embeddings, &expected, 1e-6);

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("embedded {} texts, dim 32, in ", texts.len())),
        "{stderr}"
    );
    assert!(stderr.contains("texts/s)"), "{stderr}");
}

#[test]
fn stdin_and_input_file_match_arguments() {
    let texts = sample_texts();
    let expected = library_embeddings(&tiny_dir(), &texts, &EncodeOptions::default());

    let from_stdin = mtl()
        .args(["embed", "-m", &tiny()])
        .write_stdin(lines(&texts))
        .output()
        .unwrap();
    assert!(from_stdin.status.success(), "{from_stdin:?}");
    let rows = parse_jsonl(&from_stdin.stdout);
    assert_eq!(rows.len(), texts.len());
    assert_rows_close(
        &rows.into_iter().map(|(_, e)| e).collect::<Vec<_>>(),
        &expected,
        1e-6,
    );

    // CRLF line endings, no newline after the last line, and `--input -` for stdin.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("texts.txt");
    std::fs::write(&file, texts.join("\r\n")).unwrap();
    for input in [file.to_str().unwrap(), "-"] {
        let mut cmd = mtl();
        cmd.args(["embed", "-m", &tiny(), "--input", input]);
        if input == "-" {
            cmd.write_stdin(texts.join("\r\n"));
        }
        let output = cmd.output().unwrap();
        assert!(output.status.success(), "{output:?}");
        let rows = parse_jsonl(&output.stdout);
        let got_texts: Vec<&str> = rows.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(got_texts, texts);
        assert_rows_close(
            &rows.into_iter().map(|(_, e)| e).collect::<Vec<_>>(),
            &expected,
            1e-6,
        );
    }
}

#[test]
fn npy_is_numpy_readable_to_a_file_and_to_a_pipe() {
    let texts = sample_texts();
    let expected = library_embeddings(&tiny_dir(), &texts, &EncodeOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.npy");
    let output = mtl()
        .args(["embed", "-m", &tiny(), "--output", path.to_str().unwrap()])
        .args(&texts)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(output.stdout.is_empty());
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len(), 128 + texts.len() * 32 * 4);
    let header = std::str::from_utf8(&bytes[10..128]).unwrap();
    assert_eq!(
        header.trim_end(),
        format!(
            "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, 32), }}",
            texts.len()
        )
    );
    let (shape, values) = parse_npy(&bytes);
    assert_eq!(shape, (texts.len(), 32));
    let rows: Vec<Vec<f32>> = values.chunks(32).map(<[f32]>::to_vec).collect();
    assert_rows_close(&rows, &expected, 1e-6);
    // Only the output is left in the directory: the temporary file was renamed.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    let piped = mtl()
        .args(["embed", "-m", &tiny(), "--format", "npy"])
        .args(&texts)
        .output()
        .unwrap();
    assert!(piped.status.success(), "{piped:?}");
    assert_eq!(piped.stdout, bytes);
}

#[test]
fn csv_has_a_header_and_quoted_texts() {
    let texts: Vec<String> = vec!["the cat, the dog".into(), "say \"hello\"".into(), "".into()];
    let expected = library_embeddings(&tiny_dir(), &texts, &EncodeOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.csv");
    let output = mtl()
        .args(["embed", "-m", &tiny(), "-o", path.to_str().unwrap()])
        .args(&texts)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let csv = std::fs::read_to_string(&path).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(header.len(), 33);
    assert_eq!((header[0], header[1], header[32]), ("text", "e0", "e31"));
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 3);
    assert!(rows[0].starts_with("\"the cat, the dog\","), "{}", rows[0]);
    assert!(rows[1].starts_with("\"say \"\"hello\"\"\","), "{}", rows[1]);
    assert!(rows[2].starts_with(','), "{}", rows[2]);
    let values: Vec<Vec<f32>> = rows
        .iter()
        .map(|row| {
            let fields: Vec<&str> = row.rsplitn(33, ',').collect();
            fields[..32]
                .iter()
                .rev()
                .map(|v| v.parse().unwrap())
                .collect()
        })
        .collect();
    assert_rows_close(&values, &expected, 1e-6);
}

#[test]
fn encoding_options_reach_the_library() {
    let texts = sample_texts();
    let options = EncodeOptions {
        batch_size: 2,
        pooling: Some(Pooling::Cls),
        normalize: Some(true),
        max_seq_length: Some(8),
    };
    let expected = library_embeddings(&tiny_dir(), &texts, &options);
    let output = mtl()
        .args(["embed", "-m", &tiny(), "--pooling", "cls", "--normalize"])
        .args(["--max-seq-length", "8", "--batch-size", "2"])
        .args(&texts)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let rows: Vec<Vec<f32>> = parse_jsonl(&output.stdout)
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    assert_rows_close(&rows, &expected, 1e-6);
    for row in &rows {
        let norm: f32 = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
    }

    // The last of --normalize / --no-normalize wins.
    let plain = library_embeddings(&tiny_dir(), &texts[..1], &EncodeOptions::default());
    let output = mtl()
        .args(["embed", "-m", &tiny(), "--normalize", "--no-normalize"])
        .arg(&texts[0])
        .output()
        .unwrap();
    let rows: Vec<Vec<f32>> = parse_jsonl(&output.stdout)
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    assert_rows_close(&rows, &plain, 1e-6);
}

/// 2,000 lines of varied length through 16 chunks of 128 texts: every row is in place.
#[test]
fn long_input_streams_in_chunks_in_order() {
    let words = [
        "the", "cat", "sat", "on", "mat", "dog", "news", "game", "phone",
    ];
    let texts: Vec<String> = (0..2000)
        .map(|i| {
            (0..(i * 7) % 23)
                .map(|j| words[(i + j) % words.len()])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("texts.txt");
    std::fs::write(&input, lines(&texts)).unwrap();
    let out = dir.path().join("out.npy");
    let output = mtl()
        .args(["embed", "-m", &tiny(), "--batch-size", "16", "--input"])
        .arg(&input)
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let (shape, values) = parse_npy(&std::fs::read(&out).unwrap());
    assert_eq!(shape, (2000, 32));
    let rows: Vec<Vec<f32>> = values.chunks(32).map(<[f32]>::to_vec).collect();
    let expected = library_embeddings(&tiny_dir(), &texts, &EncodeOptions::default());
    assert_rows_close(&rows, &expected, 1e-6);
}

#[test]
fn lossy_replaces_invalid_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("latin1.txt");
    std::fs::write(&input, b"caf\xe9 news\nthe cat\n").unwrap();
    let output = mtl()
        .args(["embed", "-m", &tiny(), "--lossy", "--input"])
        .arg(&input)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let rows = parse_jsonl(&output.stdout);
    let texts: Vec<String> = vec!["caf\u{FFFD} news".into(), "the cat".into()];
    assert_eq!(rows[0].0, texts[0]);
    let expected = library_embeddings(&tiny_dir(), &texts, &EncodeOptions::default());
    assert_rows_close(
        &rows.into_iter().map(|(_, e)| e).collect::<Vec<_>>(),
        &expected,
        1e-6,
    );
}

#[test]
fn errors_exit_nonzero_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let bad_utf8 = dir.path().join("bad.txt");
    std::fs::write(&bad_utf8, b"the cat\nthe dog\nbad \xff byte\n").unwrap();
    let empty_dir = dir.path().join("empty-model");
    std::fs::create_dir(&empty_dir).unwrap();
    let tiny = tiny();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--model", "no-such-model-dir", "x"],
            "cargo xtask fetch-model",
        ),
        (
            vec!["--model", empty_dir.to_str().unwrap(), "x"],
            "has no config.json",
        ),
        (
            vec!["-m", &tiny, "--input", bad_utf8.to_str().unwrap()],
            "line 3 is not valid UTF-8",
        ),
        (
            vec!["-m", &tiny, "--input", "/no/such/texts.txt"],
            "/no/such/texts.txt",
        ),
        (
            vec!["-m", &tiny, "--input", "x.txt", "text"],
            "one or the other",
        ),
        (
            vec!["-m", &tiny, "--backend", "metal", "x"],
            "unknown backend \"metal\"",
        ),
        (
            vec!["-m", &tiny, "--max-seq-length", "1000", "x"],
            "exceeds the model's 64 positions",
        ),
        (vec!["-m", &tiny, "--batch-size", "0", "x"], "--batch-size"),
        (
            vec!["-m", &tiny, "--pooling", "sum", "x"],
            "possible values",
        ),
        (
            vec!["-m", &tiny, "-o", "/no/such/dir/out.npy", "x"],
            "does not exist",
        ),
        (vec!["--revision", "v1", "x"], "needs a hub id"),
    ];
    for (args, message) in cases {
        let output = mtl().arg("embed").args(&args).output().unwrap();
        assert_fails_with(&output, message);
    }
    if !mtl_bert::Backend::Wgpu.is_compiled() {
        let output = mtl()
            .args(["embed", "-m", &tiny, "--backend", "wgpu", "x"])
            .output()
            .unwrap();
        assert_fails_with(&output, "--features wgpu");
    }
}

#[test]
fn a_failed_run_leaves_the_old_output_alone() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("texts.txt");
    let mut bytes = "the cat\n".repeat(300).into_bytes();
    bytes.extend_from_slice(b"\xff\n");
    std::fs::write(&input, bytes).unwrap();
    let out = dir.path().join("out.jsonl");
    std::fs::write(&out, "old\n").unwrap();
    let output = mtl()
        .args(["embed", "-m", &tiny(), "--batch-size", "4", "--input"])
        .arg(&input)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert_fails_with(&output, "line 301 is not valid UTF-8");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "old\n");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}

#[test]
fn help_explains_every_flag() {
    let output = mtl().args(["embed", "--help"]).output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for flag in [
        "--input",
        "--lossy",
        "--model",
        "--revision",
        "--pooling",
        "--normalize",
        "--no-normalize",
        "--batch-size",
        "--max-seq-length",
        "--backend",
        "--device",
        "--output",
        "--format",
    ] {
        let line = help
            .lines()
            .position(|l| {
                // `      --flag <V>` or `  -f, --flag <V>`: the option's own line.
                let l = l.trim_start();
                let long = l.split_once(", ").map_or(l, |(_, rest)| rest);
                long.split([' ', '<']).next() == Some(flag)
            })
            .unwrap_or_else(|| panic!("{flag} missing from:\n{help}"));
        let explanation = help.lines().nth(line + 1).unwrap_or("").trim();
        assert!(!explanation.is_empty(), "{flag} is not explained:\n{help}");
    }
    let top = mtl().arg("--help").output().unwrap();
    let top = String::from_utf8(top.stdout).unwrap();
    assert!(top.contains("embed") && top.contains("similarity"), "{top}");
}
