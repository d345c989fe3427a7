//! `mtl-bench`: one throughput measurement per process (so its peak memory is its own), printed
//! as one JSON line. `cargo xtask bench` runs these, interleaved with the PyTorch script's
//! measurements, and tabulates medians.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::prelude::*;
use clap::{Parser, ValueEnum};
use mtl::backend::BackendArgs;
use mtl_bert::row_groups;
use mtl_bert::{BertInput, DropoutKey, Embeddings, EncodeOptions, Precision, SentenceEncoder};
use mtl_model::{ModelPart, MtlConfig, MultiTaskClassifier, TaskConfig};
use mtl_train::TrainConfig;
use mtl_train::internals::{EmbeddingCache, LossTerm, TrainOptimizer, backward_in_row_groups};

#[global_allocator]
static GLOBAL: mtl_alloc::MiMalloc = mtl_alloc::MiMalloc;

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Measurement {
    /// Sentence embeddings (mean pooling, normalised) of the whole corpus: texts/s.
    Embed,
    /// Full fine-tuning steps (encoder and a 3-class head, each batch split into row groups
    /// on the cores as `mtl train` does): examples/s.
    Finetune,
    /// One epoch over the corpus with the encoder frozen, embeddings cached once: examples/s.
    Frozen,
}

/// Measures one throughput and prints `{"measurement", "batch_size", "examples", "seconds",
/// "throughput", "peak_rss_mib"}`.
#[derive(Debug, Parser)]
struct Args {
    /// What to measure.
    #[arg(value_enum)]
    measurement: Measurement,
    /// The corpus: one text per line.
    #[arg(long)]
    corpus: PathBuf,
    /// The model directory.
    #[arg(long)]
    model: PathBuf,
    /// Texts per batch.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Truncation length (fine-tuning and frozen training; embedding uses the model's 256).
    #[arg(long, default_value_t = 64)]
    max_seq_length: usize,
    /// Embedding precision: fp32, or int8 (linear layers quantised at load; flex only). With
    /// int8 the output adds each text's cosine similarity to the fp32 embedding (mean and min),
    /// computed after the measurement (and its peak memory).
    #[arg(long, default_value = "fp32", value_name = "fp32|int8")]
    quantize: Precision,
    /// Fine-tuning steps timed (after 2 untimed ones).
    #[arg(long, default_value_t = 20)]
    steps: usize,
    #[command(flatten)]
    backend: BackendArgs,
}

fn main() -> Result<()> {
    mtl_alloc::keep_freed_memory();
    let args = Args::parse();
    let device = args.backend.device()?;
    let text = std::fs::read_to_string(&args.corpus)
        .with_context(|| format!("reading {}", args.corpus.display()))?;
    let corpus: Vec<&str> = text.lines().collect();
    if args.quantize != Precision::Fp32 && args.measurement != Measurement::Embed {
        anyhow::bail!("--quantize applies to the embed measurement only");
    }
    let mut embeddings = None;
    let (examples, seconds) = match args.measurement {
        Measurement::Embed => {
            let (seconds, out) = embed(&args, &device, &corpus, args.quantize)?;
            let examples = out.len();
            embeddings = Some(out);
            (examples, seconds)
        }
        Measurement::Finetune => finetune(&args, &device, &corpus)?,
        Measurement::Frozen => frozen(&args, &device, &corpus)?,
    };
    // Measured here: the fp32 run for the comparison below is not the measurement's.
    let peak_rss = peak_rss_mib();
    let mut result = serde_json::json!({
        "measurement": format!("{:?}", args.measurement).to_lowercase(),
        "batch_size": args.batch_size,
        "examples": examples,
        "seconds": seconds,
        "throughput": examples as f64 / seconds,
        "peak_rss_mib": peak_rss,
    });
    if let Some(out) = embeddings.filter(|_| args.quantize != Precision::Fp32) {
        let (_, fp32) = embed(&args, &device, &corpus, Precision::Fp32)?;
        let cosines: Vec<f64> = out
            .rows()
            .zip(fp32.rows())
            .map(|(a, b)| cosine(a, b))
            .collect();
        if cosines.iter().any(|c| !c.is_finite()) {
            anyhow::bail!("a cosine similarity to fp32 is not finite");
        }
        result["precision"] = args.quantize.name().into();
        result["kernel"] = args.quantize.describe().into();
        result["cosine_to_fp32"] = (cosines.iter().sum::<f64>() / cosines.len() as f64).into();
        result["cosine_to_fp32_min"] = cosines.iter().copied().fold(f64::INFINITY, f64::min).into();
    }
    println!("{result}");
    Ok(())
}

/// Seconds to embed the corpus (after embedding its first 64 texts untimed), and the embeddings.
fn embed(
    args: &Args,
    device: &Device,
    corpus: &[&str],
    precision: Precision,
) -> Result<(f64, Embeddings)> {
    let encoder = SentenceEncoder::load_with_precision(&args.model, device, precision)?;
    let options = EncodeOptions {
        batch_size: args.batch_size,
        ..EncodeOptions::default()
    };
    encoder.encode(&corpus[..corpus.len().min(64)], &options)?;
    let started = Instant::now();
    let embeddings = encoder.encode(corpus, &options)?;
    Ok((started.elapsed().as_secs_f64(), embeddings))
}

/// Cosine similarity of two embeddings (sentence-transformers' `cos_sim`, in f64 then f32).
fn cosine(a: &[f32], b: &[f32]) -> f64 {
    f64::from(mtl_bert::cosine_matrix(&[a, b])[0][1])
}

fn classifier(args: &Args, device: &Device) -> Result<MultiTaskClassifier> {
    let mut config = MtlConfig::new(vec![TaskConfig::new("task", &["a", "b", "c"])]);
    config.max_seq_length = Some(args.max_seq_length);
    Ok(MultiTaskClassifier::from_pretrained(
        &args.model,
        config,
        0,
        device,
    )?)
}

/// The corpus tokenized, in batches of `batch_size` consecutive texts, with labels `i % 3`.
fn batches(
    classifier: &MultiTaskClassifier,
    corpus: &[&str],
    batch_size: usize,
) -> Result<Vec<(mtl_bert::TokenBatch, Vec<i64>)>> {
    let tokenizer = classifier.tokenizer();
    corpus
        .chunks(batch_size)
        .enumerate()
        .map(|(b, texts)| {
            let batch = tokenizer.pad(tokenizer.encode(texts)?)?;
            let labels = (0..texts.len())
                .map(|i| ((b * batch_size + i) % 3) as i64)
                .collect();
            Ok((batch, labels))
        })
        .collect()
}

fn finetune(args: &Args, device: &Device, corpus: &[&str]) -> Result<(usize, f64)> {
    let device = device.clone().autodiff();
    let mut classifier = classifier(args, &device)?;
    let batches = batches(&classifier, corpus, args.batch_size)?;
    let config = TrainConfig::default();
    let mut optimizer = TrainOptimizer::new(&classifier.model, &config, args.steps + 2);
    let loss = CrossEntropyLossConfig::new().init(&device);
    let mut examples = 0;
    let mut started = Instant::now();
    for (step, (batch, labels)) in batches.iter().cycle().take(args.steps + 2).enumerate() {
        if step == 2 {
            started = Instant::now();
            examples = 0;
        }
        let input = BertInput {
            dropout: Some(DropoutKey::new(step as u64)),
            ..batch.to_input(&device)
        };
        let terms = [LossTerm {
            input: &input,
            task: 0,
            labels,
            weight: 1.0,
        }];
        let (grads, logits) =
            backward_in_row_groups(&classifier.model, &loss, &terms, row_groups(&device));
        let _ = logits[0].clone().into_data();
        let (model, _) = optimizer.step(classifier.model, grads, step);
        classifier.model = model;
        examples += labels.len();
    }
    Ok((examples, started.elapsed().as_secs_f64()))
}

fn frozen(args: &Args, device: &Device, corpus: &[&str]) -> Result<(usize, f64)> {
    let device = device.clone().autodiff();
    let mut classifier = classifier(args, &device)?;
    let config = classifier.config().clone();
    classifier.model = classifier.model.freeze(&ModelPart::Encoder, &config)?;
    let started = Instant::now();
    let data = mtl_data::TaskData {
        name: "task".into(),
        labels: config.tasks[0].labels.clone(),
        path: args.corpus.clone(),
        examples: corpus
            .iter()
            .enumerate()
            .map(|(i, text)| mtl_data::Example {
                text_pair: None,
                id: i.to_string(),
                text: (*text).to_owned(),
                label: i % 3,
            })
            .collect(),
    };
    let tokens = mtl_data::TokenizedTask::new(&data, classifier.tokenizer())?;
    let cache = EmbeddingCache::compute(
        &classifier.model,
        std::slice::from_ref(&tokens),
        args.batch_size,
        &device,
        |_| {},
    )?;
    let train = TrainConfig::default();
    let steps = corpus.len().div_ceil(args.batch_size);
    let mut optimizer = TrainOptimizer::new(&classifier.model, &train, steps);
    let loss = CrossEntropyLossConfig::new().init(&device);
    let indices: Vec<usize> = (0..corpus.len()).collect();
    for (step, chunk) in indices.chunks(args.batch_size).enumerate() {
        let batch = tokens.batch(0, chunk);
        let key = DropoutKey::new(step as u64);
        let logits = classifier
            .model
            .head_logits(cache.batch(0, chunk), 0, Some(key));
        let value = loss.forward(logits, batch.targets(&device));
        let _ = value.clone().into_scalar::<f32>();
        let grads = GradientsParams::from_grads(value.backward(), &classifier.model);
        let (model, _) = optimizer.step(classifier.model, grads, step);
        classifier.model = model;
    }
    Ok((corpus.len(), started.elapsed().as_secs_f64()))
}

/// The process's peak resident memory (`VmHWM`), in MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
