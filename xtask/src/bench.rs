//! `cargo xtask bench`: our throughput beside PyTorch's and ONNX Runtime's, measured in the same
//! run.

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

/// An implementation measured beside ours (fp32): a script of `scripts/` in the PyTorch venv,
/// or our own binary at another precision.
struct Peer {
    /// `who` in results.json.
    who: &'static str,
    /// Its name in the table.
    title: &'static str,
    /// The script, or `None` for our `mtl-bench`.
    script: Option<&'static str>,
    /// Arguments after the common ones.
    args: &'static [&'static str],
    /// Measured for the embedding measurements only.
    embed_only: bool,
    /// The table has a "numerator / title" column, the numerator being `who` (ours, or ours
    /// in int8) and the title its name.
    ratio: Option<(&'static str, &'static str)>,
    /// The table has the cosine similarity of its embeddings to fp32's.
    cosine: bool,
    /// The script takes the release-built Python extension module (`--module PATH`).
    module: bool,
}

const PYTORCH: Peer = Peer {
    who: "pytorch",
    title: "PyTorch",
    script: Some("scripts/bench_pytorch.py"),
    args: &[],
    embed_only: false,
    ratio: Some(("ours", "ours")),
    cosine: false,
    module: false,
};

const ORT_FP32: Peer = Peer {
    who: "onnxruntime-fp32",
    title: "ORT fp32",
    script: Some("scripts/bench_onnxruntime.py"),
    args: &["--precision", "fp32"],
    embed_only: true,
    ratio: Some(("ours", "ours")),
    cosine: false,
    module: false,
};

/// Ours with `--quantize int8`, its cosine similarity to our fp32 embeddings beside.
const OURS_INT8: Peer = Peer {
    who: "ours-int8",
    title: "ours int8",
    script: None,
    args: &["--quantize", "int8"],
    embed_only: true,
    ratio: None,
    cosine: true,
    module: false,
};

/// Compared with ours in int8, its cosine similarity to ORT fp32's embeddings beside.
const ORT_INT8: Peer = Peer {
    who: "onnxruntime-int8",
    title: "ORT int8",
    script: Some("scripts/bench_onnxruntime.py"),
    args: &["--precision", "int8"],
    embed_only: true,
    ratio: Some(("ours-int8", "ours int8")),
    cosine: true,
    module: false,
};

/// Ours through the Python package (`mtl.SentenceEncoder.encode`), in the same process
/// conditions as `mtl-bench` (the same corpus, batch sizes and untimed warm-up).
const PYTHON_PACKAGE: Peer = Peer {
    who: "ours-python",
    title: "from Python",
    script: Some("scripts/bench_mtl_python.py"),
    args: &[],
    embed_only: true,
    ratio: Some(("ours", "ours")),
    cosine: false,
    module: true,
};

/// The peers measured beside ours.
#[derive(Debug, Clone, Copy)]
pub struct Peers {
    /// sentence-transformers / PyTorch.
    pub pytorch: bool,
    /// ONNX Runtime fp32 and int8, and ours in int8.
    pub onnxruntime: bool,
    /// Ours through the Python package.
    pub python_package: bool,
}

impl Peer {
    fn measures(&self, measurement: &str) -> bool {
        !self.embed_only || measurement == "embed"
    }

    /// The command measuring `common`; `ours` is our `mtl-bench` with its backend's
    /// arguments and environment.
    fn command(
        &self,
        common: &[String],
        threads: usize,
        ours: &Command,
        module: Option<&std::path::Path>,
    ) -> Command {
        let Some(script) = self.script else {
            let mut command = Command::new(ours.get_program());
            command.args(common).args(ours.get_args()).args(self.args);
            for (key, value) in ours.get_envs() {
                if let Some(value) = value {
                    command.env(key, value);
                }
            }
            return command;
        };
        let mut command = Command::new("python3");
        command
            .arg(workspace_root().join(script))
            .args(common)
            .args(["--threads", &threads.to_string()])
            .args(self.args)
            .args(
                module
                    .filter(|_| self.module)
                    .map(|m| ["--module".into(), m.display().to_string()])
                    .into_iter()
                    .flatten()
                    .collect::<Vec<String>>(),
            )
            // bench_onnxruntime.py keeps its exported models in $MTL_CACHE_DIR/bench/onnx.
            .env("MTL_CACHE_DIR", mtl_assets::cache_dir());
        command
    }
}

/// `(measurement name, who, the JSON line it printed)`.
type Results = Vec<(String, &'static str, Value)>;

pub fn run(
    backend: &str,
    with: Peers,
    repeat: usize,
    only: &[String],
    corpus: Corpus,
) -> Result<()> {
    check_backend(backend)?;
    let model = fetch_model()?;
    datasets(false)?;
    let corpus_name = format!("{corpus:?}").to_lowercase();
    let corpus = write_corpus(corpus)?;
    let (ours, env) = build_release("mtl-bench", backend)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let selected: Vec<_> = MEASUREMENTS
        .iter()
        .filter(|(name, ..)| only.is_empty() || only.iter().any(|o| o == name))
        .collect();
    let mut peers = Vec::new();
    if with.pytorch {
        peers.push(&PYTORCH);
    }
    if with.onnxruntime {
        peers.extend([&ORT_FP32, &OURS_INT8, &ORT_INT8]);
    }
    let module = if with.python_package {
        peers.push(&PYTHON_PACKAGE);
        Some(crate::build_python_module(backend)?)
    } else {
        None
    };
    let mut results: Results = Vec::new();
    // Every repetition runs ours, then each peer, for every measurement.
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
                .args(["--backend", backend])
                .envs(env.iter().map(|(k, v)| (k, v)));
            let ours_command = command;
            let mut command = Command::new(&ours);
            command
                .args(&common)
                .args(ours_command.get_args())
                .envs(env.iter().map(|(k, v)| (k, v)));
            results.push((name.to_string(), "ours", run_json(command)?));
            for peer in peers.iter().filter(|p| p.measures(measurement)) {
                eprintln!("[{}/{repeat}] {name}: {}", rep + 1, peer.title);
                let command = peer.command(&common, threads, &ours_command, module.as_deref());
                results.push((name.to_string(), peer.who, run_json(command)?));
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
    println!("corpus: {corpus_name} ({})", corpus.display());
    println!("{}", table(&results, &selected, backend, threads, &peers));
    eprintln!("raw results: {}", out.join("results.json").display());
    Ok(())
}

/// The texts every measurement runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Corpus {
    /// The first 1,000 texts of the BBC and of the tweets training splits (file order): short
    /// tweets and BBC paragraphs of up to 256 tokens.
    Mixed,
    /// The first 2,000 texts of the tweets training split: short texts only.
    Tweets,
}

/// The corpus's texts, one per line, in a file of the cache.
fn write_corpus(corpus: Corpus) -> Result<PathBuf> {
    let datasets = crate::datasets_dir();
    let (sources, file): (&[(&str, usize)], _) = match corpus {
        Corpus::Mixed => (
            &[("bbc", PER_DATASET), ("tweets", PER_DATASET)],
            "corpus.txt",
        ),
        Corpus::Tweets => (&[("tweets", 2 * PER_DATASET)], "corpus-tweets.txt"),
    };
    let mut lines = Vec::new();
    for &(name, count) in sources {
        let path = datasets.join(name).join("train.jsonl");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        for line in text.lines().take(count) {
            let value: Value = serde_json::from_str(line)?;
            let text = value["text"].as_str().context("a text field")?;
            lines.push(text.replace(['\n', '\r'], " "));
        }
    }
    let dir = mtl_assets::cache_dir().join("bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(file);
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

/// `key` of every result of `who` for the measurement `name`.
fn values(results: &Results, name: &str, who: &str, key: &str) -> Vec<f64> {
    results
        .iter()
        .filter(|(n, w, _)| n == name && *w == who)
        .filter_map(|(_, _, v)| v[key].as_f64())
        .collect()
}

/// One implementation's results for one measurement, over the repetitions.
struct Summary {
    /// Median throughput, and its min and max.
    throughput: f64,
    min: f64,
    max: f64,
    /// Median peak RSS (MiB).
    rss: f64,
    /// The median of the mean cosine similarities to fp32, and the smallest one of any text.
    cosine: Option<(f64, f64)>,
}

impl Summary {
    fn of(results: &Results, name: &str, who: &str) -> Option<Summary> {
        let mut throughput = values(results, name, who, "throughput");
        if throughput.is_empty() {
            return None;
        }
        let min = throughput.iter().copied().fold(f64::INFINITY, f64::min);
        let max = throughput.iter().copied().fold(0.0, f64::max);
        let mut cosine = values(results, name, who, "cosine_to_fp32");
        let cosine_min = values(results, name, who, "cosine_to_fp32_min");
        Some(Summary {
            throughput: median(&mut throughput),
            min,
            max,
            rss: median(&mut values(results, name, who, "peak_rss_mib")),
            cosine: (!cosine.is_empty()).then(|| {
                let worst = cosine_min.iter().copied().fold(f64::INFINITY, f64::min);
                (median(&mut cosine), worst)
            }),
        })
    }
}

/// The Markdown table: throughput of ours and of each peer (with ratios and cosines where the
/// peer has them), then everyone's peak RSS. A peer not run for a measurement has "-".
fn table(
    results: &Results,
    selected: &[&(&str, &str, usize)],
    backend: &str,
    threads: usize,
    peers: &[&Peer],
) -> String {
    let mut header = vec!["measurement".to_string(), format!("ours ({backend})")];
    for peer in peers {
        header.push(peer.title.into());
        if let Some((_, numerator)) = peer.ratio {
            header.push(format!("{numerator} / {}", peer.title));
        }
        if peer.cosine {
            header.push(format!("{} cosine to fp32", peer.title));
        }
    }
    header.push("ours peak RSS".into());
    header.extend(peers.iter().map(|p| format!("{} peak RSS", p.title)));
    let mut out = format!(
        "| {} |\n|{}\n",
        header.join(" | "),
        "---|".repeat(header.len())
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
        let Some(ours) = Summary::of(results, name, "ours") else {
            continue;
        };
        let theirs: Vec<_> = peers
            .iter()
            .map(|p| Summary::of(results, name, p.who))
            .collect();
        let mut row = vec![label, throughput(&ours)];
        for (peer, summary) in peers.iter().zip(&theirs) {
            row.push(summary.as_ref().map_or("-".into(), throughput));
            if let Some((who, _)) = peer.ratio {
                let numerator = Summary::of(results, name, who);
                row.push(match (numerator, summary) {
                    (Some(n), Some(s)) => format!("{:.2}x", n.throughput / s.throughput),
                    _ => "-".into(),
                });
            }
            if peer.cosine {
                row.push(match summary.as_ref().and_then(|s| s.cosine) {
                    Some((mean, min)) => format!("{mean:.4} (min {min:.4})"),
                    None => "-".into(),
                });
            }
        }
        row.push(format!("{:.0} MiB", ours.rss));
        for summary in &theirs {
            row.push(
                summary
                    .as_ref()
                    .map_or("-".into(), |s| format!("{:.0} MiB", s.rss)),
            );
        }
        out += &format!("| {} |\n", row.join(" | "));
    }
    out += &format!(
        "\nMedians of the repetitions (min-max in brackets); {threads} threads for each; each \
         measurement in its own process."
    );
    if peers.iter().any(|p| p.who.starts_with("onnxruntime")) {
        let version = results
            .iter()
            .filter(|(_, who, _)| who.starts_with("onnxruntime"))
            .find_map(|(_, _, v)| v["onnxruntime"].as_str())
            .unwrap_or("?");
        out += &format!(
            "\nORT: ONNX Runtime {version} (CPU, ORT_ENABLE_ALL) on the model exported to ONNX, \
             embedding measurements only; int8 is its dynamic quantisation (QInt8 weights, per \
             channel). Ours in int8 is `--quantize int8`. Each int8's cosine is to its own fp32 \
             embeddings over the corpus: the median of the means (the smallest of any text in \
             brackets)."
        );
    }
    out
}

fn throughput(s: &Summary) -> String {
    format!("{:.1} ({:.1}-{:.1})", s.throughput, s.min, s.max)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn table_has_a_column_group_per_peer_and_dashes_where_a_peer_did_not_run() {
        let mut results: Results = Vec::new();
        for (throughput, rss) in [(100.0, 300.0), (120.0, 310.0), (90.0, 320.0)] {
            results.push((
                "embed32".into(),
                "ours",
                json!({"throughput": throughput, "peak_rss_mib": rss}),
            ));
            results.push((
                "embed32".into(),
                "pytorch",
                json!({"throughput": 80.0, "peak_rss_mib": 900.0}),
            ));
            results.push((
                "embed32".into(),
                "onnxruntime-fp32",
                json!({"throughput": 200.0, "peak_rss_mib": 500.0, "onnxruntime": "1.32.0"}),
            ));
            results.push(("embed32".into(), "ours-int8", json!({"throughput": 330.0, "peak_rss_mib": 290.0, "cosine_to_fp32": 0.997, "cosine_to_fp32_min": 0.991})));
            results.push(("embed32".into(), "onnxruntime-int8", json!({"throughput": 300.0, "peak_rss_mib": 400.0, "cosine_to_fp32": 0.99, "cosine_to_fp32_min": 0.98})));
        }
        results.push((
            "finetune".into(),
            "ours",
            json!({"throughput": 15.0, "peak_rss_mib": 1200.0}),
        ));
        results.push((
            "finetune".into(),
            "pytorch",
            json!({"throughput": 30.0, "peak_rss_mib": 2200.0}),
        ));
        let selected = [&MEASUREMENTS[1], &MEASUREMENTS[3]];
        let table = table(
            &results,
            &selected,
            "flex",
            2,
            &[&PYTORCH, &ORT_FP32, &OURS_INT8, &ORT_INT8],
        );
        let lines: Vec<_> = table.lines().collect();
        assert_eq!(
            lines[0],
            "| measurement | ours (flex) | PyTorch | ours / PyTorch | ORT fp32 | ours / ORT fp32 \
             | ours int8 | ours int8 cosine to fp32 | ORT int8 | ours int8 / ORT int8 \
             | ORT int8 cosine to fp32 | ours peak RSS | PyTorch peak RSS | ORT fp32 peak RSS \
             | ours int8 peak RSS | ORT int8 peak RSS |"
        );
        assert_eq!(lines[1], "|---".repeat(16) + "|");
        assert_eq!(
            lines[2],
            "| embedding, batch 32 (texts/s) | 100.0 (90.0-120.0) | 80.0 (80.0-80.0) | 1.25x \
             | 200.0 (200.0-200.0) | 0.50x | 330.0 (330.0-330.0) | 0.9970 (min 0.9910) \
             | 300.0 (300.0-300.0) | 1.10x | 0.9900 (min 0.9800) \
             | 310 MiB | 900 MiB | 500 MiB | 290 MiB | 400 MiB |"
        );
        assert_eq!(
            lines[3],
            "| full fine-tuning, batch 32, 64 tokens (examples/s) | 15.0 (15.0-15.0) \
             | 30.0 (30.0-30.0) | 0.50x | - | - | - | - | - | - | - | 1200 MiB | 2200 MiB | - \
             | - | - |"
        );
        assert!(table.contains("ONNX Runtime 1.32.0"));
        // Ours alone: no peer columns, no ORT note.
        let alone = super::table(&results, &selected[..1], "flex", 2, &[]);
        assert!(
            alone.starts_with("| measurement | ours (flex) | ours peak RSS |\n|---|---|---|\n")
        );
        assert!(!alone.contains("ONNX"));
    }
}
