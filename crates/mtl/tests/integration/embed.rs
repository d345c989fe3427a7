//! `mtl embed` end to end on the tiny model: its output equals the library's embeddings in
//! every format and from every input, and bad input fails with a clear message.

use crate::common;

use std::process::Output;

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

/// The names in `dir`, sorted.
fn names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `mtl embed -m tiny -o OUTPUT --format FORMAT` on `texts`, as arguments or (`stdin`) on
/// standard input, where the number of texts is not known in advance.
fn embed_to(output: &std::path::Path, format: &str, texts: &[String], stdin: bool) -> Output {
    let mut cmd = mtl();
    cmd.args(["embed", "-m", &tiny(), "--format", format, "-o"])
        .arg(output);
    if stdin {
        cmd.write_stdin(lines(texts));
    } else {
        cmd.args(texts);
    }
    cmd.output().unwrap()
}

/// What `mtl embed` writes to a new regular file, the reference for the other outputs.
fn regular_output(format: &str, texts: &[String]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out");
    let output = embed_to(&path, format, texts, false);
    assert!(output.status.success(), "{output:?}");
    std::fs::read(&path).unwrap()
}

#[cfg(unix)]
#[test]
fn a_symlink_output_writes_its_target_and_keeps_the_link() {
    let texts = sample_texts();
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real.npy");
    std::fs::write(&real, b"old").unwrap();
    let link = dir.path().join("link.npy");
    std::os::unix::fs::symlink("real.npy", &link).unwrap();
    for stdin in [false, true] {
        let output = embed_to(&link, "npy", &texts, stdin);
        assert!(output.status.success(), "{output:?}");
        let meta = std::fs::symlink_metadata(&link).unwrap();
        assert!(meta.file_type().is_symlink(), "the link was replaced");
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            std::path::Path::new("real.npy")
        );
        assert_eq!(std::fs::read(&real).unwrap(), regular_output("npy", &texts));
        assert_eq!(names(dir.path()), ["link.npy", "real.npy"]);
    }
}

/// Opens `fifo` for writing without blocking and closes it: a reader still waiting in `open`
/// (because `mtl` never opened the FIFO) then sees the end instead of hanging the test. Once the
/// reader is done, it does nothing (no reader: the open fails).
#[cfg(target_os = "linux")]
fn release_fifo_reader(fifo: &std::path::Path) {
    use std::os::unix::fs::OpenOptionsExt;
    const O_NONBLOCK: i32 = 0o4000;
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(O_NONBLOCK)
        .open(fifo);
}

#[cfg(target_os = "linux")]
#[test]
fn a_fifo_output_is_written_in_place_and_stays_a_fifo() {
    use std::os::unix::fs::FileTypeExt;
    let texts = sample_texts();
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    // npy from arguments (count known: header first), npy from standard input (rows held until
    // the end), and jsonl and csv, streamed.
    for (format, stdin) in [
        ("npy", false),
        ("npy", true),
        ("jsonl", true),
        ("csv", false),
    ] {
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read(&fifo).unwrap())
        };
        let output = embed_to(&fifo, format, &texts, stdin);
        release_fifo_reader(&fifo);
        // Checked before joining: a FIFO replaced by a file leaves the reader waiting forever.
        let meta = std::fs::symlink_metadata(&fifo).unwrap();
        assert!(meta.file_type().is_fifo(), "{format}: no longer a FIFO");
        assert!(output.status.success(), "{format}: {output:?}");
        let got = reader.join().unwrap();
        assert_eq!(
            got,
            regular_output(format, &texts),
            "{format}, stdin {stdin}"
        );
        assert_eq!(names(dir.path()), ["pipe"], "nothing beside the FIFO");
    }
}

#[cfg(unix)]
#[test]
fn dev_null_output_is_written_not_replaced() {
    use std::os::unix::fs::FileTypeExt;
    let texts = sample_texts();
    for (format, stdin) in [("npy", false), ("npy", true), ("jsonl", false)] {
        let output = embed_to(std::path::Path::new("/dev/null"), format, &texts, stdin);
        assert!(output.status.success(), "{format}: {output:?}");
        let meta = std::fs::symlink_metadata("/dev/null").unwrap();
        assert!(
            meta.file_type().is_char_device(),
            "/dev/null is no longer a character device"
        );
    }
    let stray: Vec<String> = names(std::path::Path::new("/dev"))
        .into_iter()
        .filter(|n| n.contains("mtl-partial") || n.contains("mtl-embed"))
        .collect();
    assert!(stray.is_empty(), "left in /dev: {stray:?}");
}

#[test]
fn a_directory_output_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = mtl()
        .args(["embed", "-m", &tiny(), "-o"])
        .arg(dir.path())
        .arg("the cat")
        .output()
        .unwrap();
    assert_fails_with(
        &output,
        &format!("--output {} is a directory", dir.path().display()),
    );
    assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
}

#[cfg(unix)]
#[test]
fn outputs_get_the_umask_mode_and_a_replaced_file_keeps_its_own() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();
    // A file this process creates gets 0o666 less the umask, which `mtl` inherits.
    let reference = dir.path().join("reference");
    std::fs::File::create(&reference).unwrap();
    let umask_mode = mode(&reference);
    for format in ["jsonl", "npy", "csv"] {
        let new = dir.path().join(format!("new.{format}"));
        let output = embed_to(&new, format, &sample_texts(), false);
        assert!(output.status.success(), "{output:?}");
        assert_eq!(mode(&new), umask_mode, "{format}: a new file, not 0600");

        let replaced = dir.path().join(format!("replaced.{format}"));
        std::fs::write(&replaced, b"old").unwrap();
        std::fs::set_permissions(&replaced, std::fs::Permissions::from_mode(0o640)).unwrap();
        let output = embed_to(&replaced, format, &sample_texts(), true);
        assert!(output.status.success(), "{output:?}");
        assert_ne!(std::fs::read(&replaced).unwrap(), b"old");
        assert_eq!(
            mode(&replaced),
            0o640,
            "{format}: a replaced file keeps its mode"
        );
    }
}

#[test]
fn a_killed_runs_temporary_file_is_removed_by_the_next_run() {
    let texts = sample_texts();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.npy");
    std::fs::write(&out, b"old").unwrap();
    // Killed (SIGKILL) just before its rename: the old file stays, with the temporary file
    // beside it, named after the output and the process.
    let killed = mtl()
        .env("MTL_FAULT_AT_STEP", "1")
        .args(["embed", "-m", &tiny(), "-o"])
        .arg(&out)
        .args(&texts)
        .output()
        .unwrap();
    assert!(!killed.status.success(), "{killed:?}");
    assert_eq!(std::fs::read(&out).unwrap(), b"old");
    let left = names(dir.path());
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(
        left[0].starts_with(".out.npy.") && left[0].ends_with(".mtl-partial"),
        "{left:?}"
    );

    let output = embed_to(&out, "npy", &texts, false);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(names(dir.path()), ["out.npy"]);
    assert_eq!(std::fs::read(&out).unwrap(), regular_output("npy", &texts));
}

#[test]
fn dash_and_dev_stdout_are_standard_output() {
    let texts = sample_texts();
    for format in ["jsonl", "npy"] {
        let expected = regular_output(format, &texts);
        for output in ["-", "/dev/stdout"] {
            // Standard output is a pipe here.
            let piped = embed_to(std::path::Path::new(output), format, &texts, false);
            assert!(piped.status.success(), "{output}: {piped:?}");
            assert_eq!(piped.stdout, expected, "{format} to {output}");
        }
    }
    // A file opened for appending (`>> out.jsonl`) is appended to, not replaced.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("out.jsonl");
    std::fs::write(&log, "earlier\n").unwrap();
    let file = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_mtl"))
        .env_remove("MTL_BACKEND")
        .args(["embed", "-m", &tiny(), "-o", "/dev/stdout"])
        .args(&texts)
        .stdout(file)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let mut expected = b"earlier\n".to_vec();
    expected.extend(regular_output("jsonl", &texts));
    assert_eq!(std::fs::read(&log).unwrap(), expected);
}

#[test]
fn quantize_int8_gives_the_librarys_int8_embeddings() {
    let texts = sample_texts();
    let output = mtl()
        .args(["embed", "--model", &tiny(), "--quantize", "int8"])
        .args(&texts)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let embeddings: Vec<Vec<f32>> = parse_jsonl(&output.stdout)
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    let device = mtl_bert::Backend::Flex.device(0).unwrap();
    let encoder = mtl_bert::SentenceEncoder::load_with_precision(
        tiny_dir(),
        &device,
        mtl_bert::Precision::Int8,
    )
    .unwrap();
    let expected: Vec<Vec<f32>> = encoder
        .encode(&texts, &EncodeOptions::default())
        .unwrap()
        .rows()
        .map(<[f32]>::to_vec)
        .collect();
    assert_rows_close(&embeddings, &expected, 1e-6);
    // Not the f32 embeddings: the quantised path ran.
    let fp32 = library_embeddings(&tiny_dir(), &texts, &EncodeOptions::default());
    assert!(
        embeddings.iter().zip(&fp32).any(|(a, b)| a != b),
        "int8 gave the f32 embeddings"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("precision: int8 ("), "{stderr}");
}

#[test]
fn unknown_precision_is_refused() {
    let output = mtl()
        .args(["embed", "--model", &tiny(), "--quantize", "int4", "a"])
        .output()
        .unwrap();
    assert_fails_with(&output, "[possible values: fp32, int8]");
}
