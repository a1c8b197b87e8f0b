//! What the engine tells its caller as it goes: one [`Event`] per phase, which the fronts print as a human
//! line or as one JSON line (`--format json`, schema in the crate documentation).

use serde::Serialize;
use serde_json::{Map, Value};

/// One phase ended (or was skipped, or failed).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// `recover`, `pre-check`, `stage`, `images`, `switch`, `post-verify`, `rollback`, `done` or `dry-run`.
    pub phase: &'static str,
    /// `ok`, `failed` or `skipped`.
    pub status: &'static str,
    /// One human sentence.
    pub message: String,
    /// The phase's fields (documented per phase).
    #[serde(flatten)]
    pub data: Map<String, Value>,
}

impl Event {
    /// An event without fields.
    pub fn new(phase: &'static str, status: &'static str, message: impl Into<String>) -> Event {
        Event {
            phase,
            status,
            message: message.into(),
            data: Map::new(),
        }
    }

    /// Adds a field.
    pub fn with(mut self, key: &str, value: impl Serialize) -> Event {
        self.data.insert(
            key.to_string(),
            serde_json::to_value(value).unwrap_or(Value::Null),
        );
        self
    }
}

/// Receives events.
pub trait Observer {
    /// Called once per event, in order.
    fn event(&mut self, event: &Event);
}

/// Collects events (tests, and callers that print at the end).
#[derive(Debug, Default)]
pub struct Collect(pub Vec<Event>);

impl Observer for Collect {
    fn event(&mut self, event: &Event) {
        self.0.push(event.clone());
    }
}
