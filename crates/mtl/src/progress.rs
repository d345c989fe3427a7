//! Progress on standard error: of an embedding run (a bar for inputs larger than one batch,
//! only when standard error is a terminal, and a summary line at the end), and of a training
//! run (the trainer's events as lines and per-epoch bars, and the end-of-run table).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use mtl_hub::Event as HubEvent;
use mtl_train::{Event, Observer, Summary, TaskStats};

/// Counts embedded texts, draws the bar and prints the summary.
pub struct EmbedProgress {
    bar: ProgressBar,
    batch_size: usize,
    visible: bool,
    start: Instant,
    done: usize,
}

impl EmbedProgress {
    /// Starts timing. `total` is the number of texts when known (a bar with a length), else
    /// `None` (a counter that appears once more than one batch has been read).
    pub fn new(total: Option<usize>, batch_size: usize) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let (bar, visible) = match total {
            Some(n) => {
                let bar =
                    ProgressBar::with_draw_target(Some(n as u64), ProgressDrawTarget::hidden());
                bar.set_style(style(
                    "{bar:40} {pos}/{len} texts, {rate}, {elapsed} elapsed, ETA {eta}",
                ));
                (bar, terminal && n > batch_size)
            }
            None => {
                let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
                bar.set_style(style("{spinner} {pos} texts, {rate}, {elapsed} elapsed"));
                (bar, false)
            }
        };
        if visible {
            bar.set_draw_target(ProgressDrawTarget::stderr());
        }
        Self {
            bar,
            batch_size,
            visible,
            start: Instant::now(),
            done: 0,
        }
    }

    /// Records `n` more texts embedded.
    pub fn inc(&mut self, n: usize) {
        self.done += n;
        if !self.visible && self.done > self.batch_size && std::io::stderr().is_terminal() {
            self.visible = true;
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
        }
        self.bar.inc(n as u64);
    }

    /// Texts embedded so far.
    pub fn done(&self) -> usize {
        self.done
    }

    /// Time since [`EmbedProgress::new`].
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Removes the bar and prints `embedded N texts, dim D, in S s (R texts/s)` on stderr.
    pub fn finish(self, dim: usize) {
        self.bar.finish_and_clear();
        eprintln!("{}", summary(self.done, dim, self.start.elapsed()));
    }
}

/// A bar style from `template`, with `{rate}` as "123.4 texts/s".
fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("a valid template")
        .with_key(
            "rate",
            |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.1} texts/s", state.per_sec());
            },
        )
}

/// The summary line: count, width, seconds and throughput.
pub fn summary(texts: usize, dim: usize, elapsed: Duration) -> String {
    let seconds = elapsed.as_secs_f64();
    let rate = if seconds > 0.0 {
        texts as f64 / seconds
    } else {
        0.0
    };
    format!("embedded {texts} texts, dim {dim}, in {seconds:.2} s ({rate:.1} texts/s)")
}

/// Draws what resolving a model reports: each step as a line on standard error (`model
/// OWNER/NAME@REVISION: cached in DIR`, `...: downloading from ENDPOINT into CACHE`, the default
/// model's fetch), each file's download as a bar (only on a terminal): one bar per file,
/// replaced when the next file starts, cleared when a file is complete.
pub fn hub_progress() -> impl FnMut(HubEvent<'_>) {
    let mut current: Option<(String, ProgressBar)> = None;
    move |event: HubEvent<'_>| {
        let HubEvent::Progress { file, bytes, total } = event else {
            if let Some((_, old)) = current.take() {
                old.finish_and_clear();
            }
            eprintln!("{event}");
            return;
        };
        if current.as_ref().is_none_or(|(name, _)| name != file) {
            let bar = match total {
                Some(total) if std::io::stderr().is_terminal() => ProgressBar::new(total),
                _ => ProgressBar::hidden(),
            };
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg} {bar:40} {bytes}/{total_bytes}, {bytes_per_sec}",
                )
                .expect("a valid template"),
            );
            bar.set_message(file.to_owned());
            if let Some((_, old)) = current.replace((file.to_owned(), bar)) {
                old.finish_and_clear();
            }
        }
        if let Some((_, bar)) = &current {
            bar.set_position(bytes);
            if total == Some(bytes) {
                bar.finish_and_clear();
            }
        }
    }
}

/// Shows the libraries' progress lines on standard error, as plain lines: the `tracing`
/// events at level info of `mtl-assets` (`fetching PACKAGE with pip`, `model ready in DIR`,
/// `data set NAME ready in DIR`) and of `mtl-hub` (what [`mtl_hub::ModelSource::resolve`]
/// reports when the trainer resolves its model). `mtl serve` sets up its own logging instead.
pub fn show_library_lines() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "mtl_assets=info,mtl_hub=info",
        ))
        .with_writer(std::io::stderr)
        .without_time()
        .with_level(false)
        .with_target(false)
        .with_ansi(false)
        .try_init();
}

/// Shows a training run's events on standard error: lines for notes, the plan, epochs and
/// evaluations; a bar per epoch and one for the embedding cache (drawn only on a terminal).
#[derive(Default)]
pub struct TrainProgress {
    bar: Option<ProgressBar>,
}

impl TrainProgress {
    /// No bar yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn start_bar(&mut self, length: usize, prefix: String, position: usize) {
        self.clear_bar();
        let bar = ProgressBar::new(length as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta} {msg}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(prefix);
        bar.set_position(position as u64);
        self.bar = Some(bar);
    }

    fn clear_bar(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    /// Prints a line above the bar (or plainly when there is none).
    fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) if !bar.is_hidden() => bar.println(text),
            _ => eprintln!("{text}"),
        }
    }
}

impl Observer for TrainProgress {
    fn event(&mut self, event: Event) {
        match event {
            Event::Note(text) => self.line(&text),
            Event::Started {
                run_dir,
                tasks,
                batches,
                ..
            } => {
                eprintln!("run directory: {}", run_dir.display());
                for task in tasks {
                    let counts: Vec<String> = task
                        .label_counts
                        .iter()
                        .map(|(label, n)| format!("{label} {n}"))
                        .collect();
                    eprintln!(
                        "task {}: {} training examples ({})",
                        task.name,
                        task.examples,
                        counts.join(", ")
                    );
                }
                eprintln!("batches: {batches}");
            }
            Event::CacheStarted { texts } => self.start_bar(texts, "embedding".into(), 0),
            Event::CacheProgress { texts } => {
                if let Some(bar) = &self.bar {
                    bar.inc(texts as u64);
                }
            }
            Event::CacheFinished { seconds } => {
                self.clear_bar();
                eprintln!("embeddings cached in {seconds:.1} s");
            }
            Event::EpochStarted {
                epoch,
                epochs,
                batches,
                done,
            } => self.start_bar(batches, format!("epoch {}/{epochs}", epoch + 1), done),
            Event::Step {
                batches_done,
                epoch_stats,
                ..
            } => {
                if let Some(bar) = &self.bar {
                    bar.set_position(batches_done as u64);
                    bar.set_message(stats_line(&epoch_stats));
                }
            }
            Event::EpochFinished {
                epoch,
                epochs,
                stats,
            } => {
                self.clear_bar();
                eprintln!("epoch {}/{epochs}: {}", epoch + 1, stats_line(&stats));
            }
            Event::Evaluated {
                step,
                split,
                metrics,
                best,
            } => {
                let scores: Vec<String> = metrics
                    .iter()
                    .map(|m| format!("{} acc {:.4} F1 {:.4}", m.task, m.accuracy, m.macro_f1))
                    .collect();
                let mean = metrics.iter().map(|m| m.macro_f1).sum::<f64>() / metrics.len() as f64;
                self.line(&format!(
                    "step {step}: {split} {} | mean F1 {mean:.4}{}",
                    scores.join(", "),
                    if best { " (best so far)" } else { "" }
                ));
            }
            Event::Checkpoint { .. } => {}
        }
    }
}

impl Drop for TrainProgress {
    fn drop(&mut self) {
        self.clear_bar();
    }
}

/// `topic loss 0.123 acc 0.950 | sentiment ...`.
fn stats_line(stats: &[TaskStats]) -> String {
    stats
        .iter()
        .map(|s| format!("{} loss {:.3} acc {:.3}", s.task, s.loss, s.accuracy))
        .collect::<Vec<_>>()
        .join(" | ")
}

/// The end-of-run table: validation and test accuracy and macro-F1 per task.
pub fn summary_table(summary: &Summary) -> String {
    let mut out = format!(
        "\n{:<14} {:>10} {:>10} {:>10} {:>10}\n",
        "task", "valid acc", "valid F1", "test acc", "test F1"
    );
    for valid in &summary.valid {
        let test = match summary.test.iter().find(|t| t.task == valid.task) {
            Some(test) => format!("{:>10.4} {:>10.4}", test.accuracy, test.macro_f1),
            None => format!("{:>10} {:>10}", "no file", "-"),
        };
        out += &format!(
            "{:<14} {:>10.4} {:>10.4} {test}\n",
            valid.task, valid.accuracy, valid.macro_f1
        );
    }
    let best = summary.best.map_or("no evaluation".into(), |b| {
        format!("step {} (epoch {})", b.step, b.epoch + 1)
    });
    out += &format!(
        "{} optimiser steps in {:.0} s{}; best model: {best}; results in {}",
        summary.steps,
        summary.train_seconds,
        if summary.cached_embeddings {
            format!(
                " (+{:.0} s caching frozen-encoder embeddings)",
                summary.cache_seconds
            )
        } else {
            String::new()
        },
        summary.run_dir.display()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_reads_well() {
        assert_eq!(
            summary(1000, 384, Duration::from_millis(2500)),
            "embedded 1000 texts, dim 384, in 2.50 s (400.0 texts/s)"
        );
        assert_eq!(
            summary(0, 32, Duration::ZERO),
            "embedded 0 texts, dim 32, in 0.00 s (0.0 texts/s)"
        );
    }
}
