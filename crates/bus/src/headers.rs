//! AMQP headers: W3C trace context and the retry bookkeeping.

use lapin::types::{AMQPValue, FieldTable, LongString};
use std::collections::BTreeMap;

pub const ATTEMPT: &str = "x-attempt";
pub const ERROR: &str = "x-error";
pub const ORIGINAL_QUEUE: &str = "x-original-queue";
pub const FAILED_AT: &str = "x-failed-at";
pub const REQUEUED: &str = "x-requeued";

/// String headers as a map (trace context is carried this way).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StringHeaders(pub BTreeMap<String, String>);

impl opentelemetry::propagation::Injector for StringHeaders {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), value);
    }
}

impl opentelemetry::propagation::Extractor for StringHeaders {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

impl StringHeaders {
    /// The current span's trace context.
    pub fn current_trace() -> Self {
        let mut headers = Self::default();
        platform::telemetry::inject_current(&mut headers);
        headers
    }

    pub fn from_table(table: Option<&FieldTable>) -> Self {
        let mut headers = Self::default();
        if let Some(table) = table {
            for (key, value) in table.inner() {
                if let Some(text) = as_string(value) {
                    headers.0.insert(key.to_string(), text);
                }
            }
        }
        headers
    }

    pub fn into_table(self) -> FieldTable {
        let mut table = FieldTable::default();
        for (key, value) in self.0 {
            table.insert(key.into(), AMQPValue::LongString(LongString::from(value)));
        }
        table
    }
}

pub fn as_string(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}

pub fn as_int(value: &AMQPValue) -> Option<i64> {
    match value {
        AMQPValue::ShortShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::LongInt(v) => Some(i64::from(*v)),
        AMQPValue::LongUInt(v) => Some(i64::from(*v)),
        AMQPValue::LongLongInt(v) => Some(*v),
        _ => None,
    }
}

/// Which delivery of a message this is (1 for the first).
pub fn attempt(table: Option<&FieldTable>) -> u32 {
    table
        .and_then(|t| t.inner().get(ATTEMPT))
        .and_then(as_int)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(1)
        .max(1)
}
