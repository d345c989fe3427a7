//! `cargo xtask bench`: our throughput beside PyTorch's, measured in the same run.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::{build_release, check_backend, datasets, fetch_model, target_dir, workspace_root};

/// `(name, measurement, batch size)`.
const MEASUREMENTS: [(&str, &str, usize); 5] = [
    ("embed1", "embed", 1),
    ("embed32", "embed", 32),
    ("embed128", "embed", 128),
    ("finetune", "finetune", 32),
    ("frozen", "frozen", 32),
];

/// Texts of the benchmark corpus taken from each data set's training split (file order).
const PER_DATASET: usize = 1000;

pub fn run(backend: &str, with_pytorch: bool, repeat: usize, only: &[String]) -> Result<()> {
    check_backend(backend)?;
    let root = workspace_root();
    let model = fetch_model()?;
    datasets(false)?;
    let corpus = write_corpus()?;
    let (ours, env) = build_release("mtl-bench", backend)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let selected: Vec<_> = MEASUREMENTS
        .iter()
        .filter(|(name, ..)| only.is_empty() || only.iter().any(|o| o == name))
        .collect();
    let mut results: Vec<(String, &str, Value)> = Vec::new();
    for rep in 0..repeat {
        for (name, measurement, batch) in &selected {
            let common = [
                measurement.to_string(),
                "--corpus".into(),
                corpus.display().to_string(),
                "--model".into(),
                model.display().to_string(),
                "--batch-size".into(),
                batch.to_string(),
            ];
            eprintln!("[{}/{repeat}] {name}: ours ({backend})", rep + 1);
            let mut command = Command::new(&ours);
            command
                .args(&common)
                .args(["--backend", backend])
                .envs(env.iter().map(|(k, v)| (k, v)));
            results.push((name.to_string(), "ours", run_json(command)?));
            if with_pytorch {
                eprintln!("[{}/{repeat}] {name}: PyTorch", rep + 1);
                let mut command = Command::new("python3");
                command
                    .arg(root.join("scripts/bench_pytorch.py"))
                    .args(&common)
                    .args(["--threads", &threads.to_string()]);
                results.push((name.to_string(), "pytorch", run_json(command)?));
            }
        }
    }
    let json: Vec<Value> = results
        .iter()
        .map(|(name, who, v)| serde_json::json!({"name": name, "who": who, "result": v}))
        .collect();
    let out = target_dir().join("bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    println!(
        "{}",
        table(&results, &selected, backend, threads, with_pytorch)
    );
    eprintln!("raw results: {}", out.join("results.json").display());
    Ok(())
}

/// 1,000 texts from the BBC and 1,000 from the tweets training splits, one per line.
fn write_corpus() -> Result<PathBuf> {
    let datasets = crate::datasets_dir();
    let mut lines = Vec::new();
    for name in ["bbc", "tweets"] {
        let path = datasets.join(name).join("train.jsonl");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        for line in text.lines().take(PER_DATASET) {
            let value: Value = serde_json::from_str(line)?;
            let text = value["text"].as_str().context("a text field")?;
            lines.push(text.replace(['\n', '\r'], " "));
        }
    }
    let dir = mtl_assets::cache_dir().join("bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("corpus.txt");
    std::fs::write(&path, lines.join("\n") + "\n")?;
    Ok(path)
}

pub(crate) fn run_json(mut command: Command) -> Result<Value> {
    let output = command
        .output()
        .with_context(|| format!("starting {command:?}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let line = stdout.lines().last().context("no output")?;
    serde_json::from_str(line).with_context(|| format!("not a result: {line}"))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn summary(
    results: &[(String, &str, Value)],
    name: &str,
    who: &str,
) -> Option<(f64, f64, f64, f64)> {
    let mut throughput: Vec<f64> = results
        .iter()
        .filter(|(n, w, _)| n == name && *w == who)
        .filter_map(|(_, _, v)| v["throughput"].as_f64())
        .collect();
    let mut rss: Vec<f64> = results
        .iter()
        .filter(|(n, w, _)| n == name && *w == who)
        .filter_map(|(_, _, v)| v["peak_rss_mib"].as_f64())
        .collect();
    if throughput.is_empty() {
        return None;
    }
    let min = throughput.iter().copied().fold(f64::INFINITY, f64::min);
    let max = throughput.iter().copied().fold(0.0, f64::max);
    Some((median(&mut throughput), min, max, median(&mut rss)))
}

fn table(
    results: &[(String, &str, Value)],
    selected: &[&(&str, &str, usize)],
    backend: &str,
    threads: usize,
    with_pytorch: bool,
) -> String {
    let mut out = format!(
        "| measurement | ours ({backend}) | {}ours peak RSS |{}\n|---|---|{}---|{}\n",
        if with_pytorch {
            "PyTorch | ours / PyTorch | "
        } else {
            ""
        },
        if with_pytorch {
            " PyTorch peak RSS |"
        } else {
            ""
        },
        if with_pytorch { "---|---|" } else { "" },
        if with_pytorch { "---|" } else { "" },
    );
    for (name, measurement, batch) in selected {
        let unit = if *measurement == "embed" {
            "texts/s"
        } else {
            "examples/s"
        };
        let label = match *measurement {
            "embed" => format!("embedding, batch {batch} ({unit})"),
            "finetune" => format!("full fine-tuning, batch {batch}, 64 tokens ({unit})"),
            _ => format!("frozen-encoder head training, batch {batch} ({unit})"),
        };
        let Some((ours, lo, hi, rss)) = summary(results, name, "ours") else {
            continue;
        };
        out += &format!("| {label} | {ours:.1} ({lo:.1}-{hi:.1}) |");
        if with_pytorch {
            match summary(results, name, "pytorch") {
                Some((theirs, plo, phi, prss)) => {
                    out += &format!(
                        " {theirs:.1} ({plo:.1}-{phi:.1}) | {:.2}x | {rss:.0} MiB | {prss:.0} MiB |",
                        ours / theirs
                    )
                }
                None => out += " - | - | {rss:.0} MiB | - |",
            }
        } else {
            out += &format!(" {rss:.0} MiB |");
        }
        out.push('\n');
    }
    out += &format!(
        "\nMedians of the repetitions (min-max in brackets); {threads} threads for both; each \
         measurement in its own process."
    );
    out
}
