//! Connecting to RabbitMQ, with backoff between attempts.

use crate::topology::Names;
use lapin::{Connection, ConnectionProperties};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A link's name and whether it is up.
type NamedLink = (String, Arc<AtomicBool>);

/// Whether the service's broker connections are up; read by the readiness
/// probe. Each long-lived user of the broker (the outbox relay, each
/// consumer) holds a [`BrokerLink`] of its own, so one that reconnects
/// cannot hide, or be hidden by, another that is fine.
#[derive(Clone, Debug, Default)]
pub struct BrokerStatus(Arc<Mutex<Vec<NamedLink>>>);

impl BrokerStatus {
    /// Registers a connection, down until it says otherwise.
    pub fn link(&self, name: impl Into<String>) -> BrokerLink {
        let up = Arc::new(AtomicBool::new(false));
        if let Ok(mut links) = self.0.lock() {
            links.push((name.into(), up.clone()));
        }
        BrokerLink(up)
    }

    /// `Ok` when there is at least one link and every link is up; else
    /// which ones are down.
    pub fn check(&self) -> Result<(), String> {
        let links = self
            .0
            .lock()
            .map_err(|_| "status unavailable".to_string())?;
        if links.is_empty() {
            return Err("not connected yet".into());
        }
        let down: Vec<&str> = links
            .iter()
            .filter(|(_, up)| !up.load(Ordering::Relaxed))
            .map(|(name, _)| name.as_str())
            .collect();
        if down.is_empty() {
            Ok(())
        } else {
            Err(format!("not connected ({})", down.join(", ")))
        }
    }
}

/// One connection's entry in [`BrokerStatus`].
#[derive(Debug)]
pub struct BrokerLink(Arc<AtomicBool>);

impl BrokerLink {
    pub fn set(&self, connected: bool) {
        self.0.store(connected, Ordering::Relaxed);
    }
}

/// Where the broker is and how names are spelled there.
#[derive(Clone, Debug)]
pub struct Broker {
    url: String,
    pub names: Names,
    pub status: BrokerStatus,
    connection_name: String,
}

impl Broker {
    pub fn new(url: impl Into<String>, names: Names, connection_name: impl Into<String>) -> Self {
        Self {
            url: with_default_frame_max(url.into()),
            names,
            status: BrokerStatus::default(),
            connection_name: connection_name.into(),
        }
    }

    /// The broker URL without credentials, for logs.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }

    pub async fn connect(&self) -> lapin::Result<Connection> {
        let properties = ConnectionProperties::default()
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio)
            .with_connection_name(self.connection_name.clone().into());
        Connection::connect(&self.url, properties).await
    }
}

/// Closes `connection` and waits until lapin's I/O thread has finished. A
/// process that exits right after a plain `close` can pull the runtime out
/// from under that thread, which then logs errors about a runtime "being
/// shutdown" although all went well.
pub async fn close(connection: Connection, reason: &str) {
    if let Err(err) = connection.close(200, reason).await {
        tracing::debug!(error = %err, "closing the broker connection");
    }
    let finished = tokio::task::spawn_blocking(move || connection.run());
    let _ = tokio::time::timeout(Duration::from_secs(5), finished).await;
}

/// Frame size asked of the broker unless the URL sets `frame_max`. lapin
/// keeps 32 frames of buffer each way per connection: at RabbitMQ's default
/// 128 KiB that is 8 MiB per connection, most of an idle service's memory.
/// Platform messages are small; larger ones are split into frames.
pub const DEFAULT_FRAME_MAX: u32 = 16 * 1024;

fn with_default_frame_max(url: String) -> String {
    if url.contains("frame_max=") {
        return url;
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}frame_max={DEFAULT_FRAME_MAX}")
}

/// Exponential backoff from 100 ms to 5 s.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: Self::FIRST }
    }
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        delay
    }

    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

/// URL without credentials, for logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***@{}", &url[..scheme_end], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap() {
        let mut backoff = Backoff::default();
        let delays: Vec<_> = (0..8).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        backoff.reset();
        assert_eq!(backoff.next_delay().as_millis(), 100);
    }

    #[test]
    fn frame_max_defaults_but_never_overrides() {
        assert_eq!(
            with_default_frame_max("amqp://h/%2f".into()),
            "amqp://h/%2f?frame_max=16384"
        );
        assert_eq!(
            with_default_frame_max("amqp://h/%2f?heartbeat=10".into()),
            "amqp://h/%2f?heartbeat=10&frame_max=16384"
        );
        assert_eq!(
            with_default_frame_max("amqp://h?frame_max=4096".into()),
            "amqp://h?frame_max=4096"
        );
    }

    #[test]
    fn redacts_credentials() {
        assert_eq!(
            redact_url("amqp://guest:pw@host:5672/%2f"),
            "amqp://***@host:5672/%2f"
        );
        assert_eq!(redact_url("amqp://host"), "amqp://host");
    }
}
