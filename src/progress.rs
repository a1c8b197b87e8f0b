//! Rendering build progress: a live display on a terminal, plain lines otherwise, JSON lines on request.
//!
//! The executor emits [`BuildEvent`]s; this module is the only place that decides how they look.

use chasi_builder::events::{BuildEvent, BuildObserver};
use chasi_layers::Digest;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The `--progress` choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// A live display when standard error is a terminal, plain lines otherwise.
    Auto,
    /// One line per event, for logs.
    Plain,
    /// One JSON object per event (on standard error), for tools.
    Json,
}

/// Builds the observer for a mode.
pub fn observer(mode: ProgressMode) -> Box<dyn BuildObserver> {
    match mode {
        ProgressMode::Json => Box::new(JsonLines),
        ProgressMode::Plain => Box::new(Plain),
        ProgressMode::Auto if std::io::stderr().is_terminal() => Box::new(Live::new()),
        ProgressMode::Auto => Box::new(Plain),
    }
}

/// Formats a byte count with binary units.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

struct JsonLines;

impl BuildObserver for JsonLines {
    fn event(&self, event: BuildEvent) {
        if let Ok(line) = serde_json::to_string(&event) {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{line}");
        }
    }
}

/// One line per event; byte counts are left to `StepDone`'s layer size.
struct Plain;

impl BuildObserver for Plain {
    fn event(&self, event: BuildEvent) {
        let line = match event {
            BuildEvent::Planned { platforms, steps } => {
                format!("planned {steps} steps for {}", platforms.join(", "))
            }
            BuildEvent::StepStarted {
                platform, label, ..
            } => format!("{platform} {label}"),
            BuildEvent::StepCached {
                platform, label, ..
            } => format!("{platform} {label} CACHED"),
            BuildEvent::StepOutput { line, .. } => format!("  | {line}"),
            BuildEvent::StepBytes { .. } | BuildEvent::StepTotal { .. } => return,
            BuildEvent::Warning { platform, message } => format!("{platform} warning: {message}"),
            BuildEvent::StepDone {
                platform,
                label,
                layer_bytes,
                seconds,
                ..
            } => {
                let size = if layer_bytes > 0 {
                    format!(", layer {}", human_bytes(layer_bytes))
                } else {
                    String::new()
                };
                format!("{platform} {label} done in {seconds:.2}s{size}")
            }
            BuildEvent::ImageDone {
                name,
                digest,
                seconds,
            } => {
                format!("built {name} {digest} in {seconds:.2}s")
            }
        };
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{line}");
    }
}

/// The terminal display: one spinner per running step with its bytes and rate; finished steps
/// scroll above.
struct Live {
    multi: MultiProgress,
    bars: Mutex<HashMap<Digest, (ProgressBar, Instant)>>,
}

impl Live {
    fn new() -> Self {
        Live {
            multi: MultiProgress::new(),
            bars: Mutex::new(HashMap::new()),
        }
    }

    /// A step whose total is known: a bar with its percentage and an ETA.
    fn bar_style() -> ProgressStyle {
        ProgressStyle::with_template(
            "{spinner} {msg} [{bar:24}] {percent:>3}% {bytes}/{total_bytes} ({bytes_per_sec}, ETA {eta}) {elapsed}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
    }

    fn style() -> ProgressStyle {
        ProgressStyle::with_template("{spinner} {msg} {bytes} ({bytes_per_sec}) {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner())
    }
}

impl BuildObserver for Live {
    fn event(&self, event: BuildEvent) {
        let Ok(mut bars) = self.bars.lock() else {
            return;
        };
        match event {
            BuildEvent::Planned { platforms, steps } => {
                let _ = self.multi.println(format!(
                    "planned {steps} steps for {}",
                    platforms.join(", ")
                ));
            }
            BuildEvent::StepStarted {
                id,
                platform,
                label,
            } => {
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(Self::style());
                bar.set_message(format!("{platform} {label}"));
                bar.enable_steady_tick(Duration::from_millis(120));
                bars.insert(id, (bar, Instant::now()));
            }
            BuildEvent::StepCached {
                platform, label, ..
            } => {
                let _ = self.multi.println(format!("✓ {platform} {label} CACHED"));
            }
            BuildEvent::StepOutput { line, .. } => {
                let _ = self.multi.println(format!("  | {line}"));
            }
            BuildEvent::Warning { platform, message } => {
                let _ = self
                    .multi
                    .println(format!("! {platform} warning: {message}"));
            }
            BuildEvent::StepTotal { id, bytes } => {
                if let Some((bar, _)) = bars.get(&id) {
                    bar.set_length(bytes);
                    bar.set_style(Self::bar_style());
                }
            }
            BuildEvent::StepBytes { id, bytes } => {
                if let Some((bar, _)) = bars.get(&id) {
                    bar.inc(bytes);
                }
            }
            BuildEvent::StepDone {
                id,
                platform,
                label,
                layer_bytes,
                seconds,
            } => {
                if let Some((bar, _)) = bars.remove(&id) {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                }
                let size = if layer_bytes > 0 {
                    format!(", layer {}", human_bytes(layer_bytes))
                } else {
                    String::new()
                };
                let _ = self
                    .multi
                    .println(format!("✓ {platform} {label} {seconds:.2}s{size}"));
            }
            BuildEvent::ImageDone {
                name,
                digest,
                seconds,
            } => {
                let _ = self
                    .multi
                    .println(format!("built {name} {digest} in {seconds:.2}s"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn bytes_are_human() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
    }
}
