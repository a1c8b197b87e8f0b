//! Build progress as events.
//!
//! The executor reports what it does through [`BuildObserver`]; it never prints. The CLI turns
//! the events into a live display on a terminal, plain lines in logs, or JSON lines for tools
//! (`--progress auto|plain|json`). Keeping rendering out of the library is what lets all three
//! exist without the executor knowing about any of them.

use chasi_layers::Digest;
use serde::Serialize;

/// One thing that happened during a build.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum BuildEvent {
    /// The plan is known: how many steps per platform will be considered.
    Planned {
        /// The target platforms, e.g. `linux/amd64`.
        platforms: Vec<String>,
        /// The number of steps over all platforms.
        steps: usize,
    },
    /// A step starts executing.
    StepStarted {
        /// The plan node identity (`sha256:…`).
        id: Digest,
        /// The platform the step is built for.
        platform: String,
        /// A short human label, e.g. `[2/7] COPY rootfs .`.
        label: String,
    },
    /// A step was found in the build cache and not executed.
    StepCached {
        /// The plan node identity.
        id: Digest,
        /// The platform.
        platform: String,
        /// The label.
        label: String,
    },
    /// A line printed by a `RUN` command.
    StepOutput {
        /// The plan node identity.
        id: Digest,
        /// The line, without its line break.
        line: String,
    },
    /// Bytes were processed by a step (read from the context, written to the store).
    StepBytes {
        /// The plan node identity.
        id: Digest,
        /// Bytes processed since the last event for this step.
        bytes: u64,
    },
    /// How many bytes a step will process, when it knows before it starts (a `COPY` of
    /// context files: the size of its tar), so a display can show a percentage and an ETA.
    StepTotal {
        /// The plan node identity.
        id: Digest,
        /// The expected total of its [`BuildEvent::StepBytes`].
        bytes: u64,
    },
    /// A step finished.
    StepDone {
        /// The plan node identity.
        id: Digest,
        /// The platform.
        platform: String,
        /// The label.
        label: String,
        /// Size of the layer it produced (uncompressed tar bytes), 0 for config-only steps.
        layer_bytes: u64,
        /// Wall time in seconds.
        seconds: f64,
    },
    /// Something the user should know that does not stop the build (a file detection skipped).
    Warning {
        /// The platform.
        platform: String,
        /// The message.
        message: String,
    },
    /// The image is complete and tagged.
    ImageDone {
        /// The name it was tagged as.
        name: String,
        /// The manifest (or index) digest.
        digest: Digest,
        /// Wall time of the whole build in seconds.
        seconds: f64,
    },
}

/// A command's output as text for events and messages: valid UTF-8 as is, each byte that
/// is not as `\xNN`, and control characters other than line breaks and tabs as `\u{NN}`, so
/// no output can garble a terminal or be lost to replacement characters.
pub fn printable(output: &[u8]) -> String {
    let mut text = String::with_capacity(output.len());
    for chunk in output.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() && c != '\n' && c != '\t' {
                text.push_str(&format!("\\u{{{:x}}}", c as u32));
            } else {
                text.push(c);
            }
        }
        for b in chunk.invalid() {
            text.push_str(&format!("\\x{b:02x}"));
        }
    }
    text
}

/// Receives build events. Implementations must be cheap: the executor calls them inline.
pub trait BuildObserver: Send + Sync {
    /// Handles one event.
    fn event(&self, event: BuildEvent);
}

/// An observer that drops every event (library callers that do not care).
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl BuildObserver for Silent {
    fn event(&self, _event: BuildEvent) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Node ids and image digests are typed digests and print as the JSON lines always did.
    #[test]
    fn digests_serialize_as_text() {
        let id = Digest::of(b"");
        let event = BuildEvent::StepBytes { id, bytes: 3 };
        assert_eq!(
            serde_json::to_string(&event).expect("json"),
            format!(r#"{{"event":"step_bytes","id":"{id}","bytes":3}}"#)
        );
    }
}
