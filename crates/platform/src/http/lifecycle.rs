//! A service's way down, in the order that loses nothing: on SIGTERM (or
//! Ctrl-C) it first marks itself draining (readiness answers 503, every
//! answer carries `Connection: close`, so keep-alive clients move off after
//! the answer they are waiting for), tells its long-lived connections to
//! go away (a WebSocket closes with 1001), waits for them and for the
//! grace period, and only then stops accepting and drains the requests in
//! flight. Background tasks stop last.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::ConnectionType;
use actix_web::middleware::Next;
use actix_web::{web, Error};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Shared by the server, its middleware and long-lived connections; cheap
/// to clone. Handlers get it as `web::Data<Lifecycle>`.
#[derive(Clone, Debug)]
pub struct Lifecycle(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    draining: AtomicBool,
    going_away: watch::Sender<bool>,
    long_lived: AtomicUsize,
}

impl Default for Lifecycle {
    fn default() -> Self {
        let (going_away, _) = watch::channel(false);
        Self(Arc::new(Inner {
            draining: AtomicBool::new(false),
            going_away,
            long_lived: AtomicUsize::new(0),
        }))
    }
}

impl Lifecycle {
    pub fn is_draining(&self) -> bool {
        self.0.draining.load(Ordering::SeqCst)
    }

    /// Starts the way down: draining, and every long-lived connection told.
    pub fn drain(&self) {
        self.0.draining.store(true, Ordering::SeqCst);
        self.0.going_away.send_replace(true);
    }

    /// Registers a long-lived connection (a WebSocket) for as long as the
    /// guard lives; `guard.going_away()` resolves when it should close.
    pub fn long_lived(&self) -> LongLived {
        self.0.long_lived.fetch_add(1, Ordering::SeqCst);
        LongLived {
            lifecycle: self.clone(),
            going_away: self.0.going_away.subscribe(),
        }
    }

    pub fn long_lived_count(&self) -> usize {
        self.0.long_lived.load(Ordering::SeqCst)
    }

    /// Waits until every long-lived connection has closed, at most `limit`.
    pub async fn long_lived_closed(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.long_lived_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A long-lived connection's registration; dropping it deregisters.
#[derive(Debug)]
pub struct LongLived {
    lifecycle: Lifecycle,
    going_away: watch::Receiver<bool>,
}

impl LongLived {
    /// Resolves once the service is shutting down.
    pub async fn going_away(&mut self) {
        let _ = self.going_away.wait_for(|away| *away).await;
    }
}

impl Drop for LongLived {
    fn drop(&mut self) {
        self.lifecycle.0.long_lived.fetch_sub(1, Ordering::SeqCst);
    }
}

/// While draining, every answer asks the client to close its connection:
/// it gets the answer it waits for, and its next request goes elsewhere.
pub async fn close_connections_while_draining(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let lifecycle = req.app_data::<web::Data<Lifecycle>>().cloned();
    let mut response = next.call(req).await?;
    if lifecycle.is_some_and(|l| l.is_draining()) {
        response
            .response_mut()
            .head_mut()
            .set_connection_type(ConnectionType::Close);
    }
    Ok(response)
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn terminate_signal() {
    let ctrl_c = actix_web::rt::signal::ctrl_c();
    #[cfg(unix)]
    {
        use actix_web::rt::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = ctrl_c => {}
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM; Ctrl-C only");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    use super::Lifecycle;
    use std::time::Duration;

    #[tokio::test]
    async fn draining_tells_long_lived_connections_and_waits_for_them() {
        let lifecycle = Lifecycle::default();
        let mut connection = lifecycle.long_lived();
        assert_eq!(lifecycle.long_lived_count(), 1);
        let closed = tokio::spawn(async move {
            connection.going_away().await;
            // A WebSocket would send its 1001 close frame here.
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(connection);
        });
        assert!(!lifecycle.is_draining());
        lifecycle.drain();
        assert!(lifecycle.is_draining());
        let started = tokio::time::Instant::now();
        lifecycle.long_lived_closed(Duration::from_secs(5)).await;
        assert_eq!(lifecycle.long_lived_count(), 0);
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(closed.await.is_ok());
    }

    #[tokio::test]
    async fn a_connection_that_never_closes_is_waited_for_only_so_long() {
        let lifecycle = Lifecycle::default();
        let _stuck = lifecycle.long_lived();
        lifecycle.drain();
        let started = tokio::time::Instant::now();
        lifecycle
            .long_lived_closed(Duration::from_millis(200))
            .await;
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert_eq!(lifecycle.long_lived_count(), 1);
    }
}
