//! Progress of an embedding run on standard error: a bar for inputs larger than one batch
//! (only when standard error is a terminal) and a summary line at the end.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

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
