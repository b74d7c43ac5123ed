//! The agent's life with the scheduler: register (retrying while the
//! scheduler cannot be reached; a refusal is fatal), then heartbeat every
//! interval with the machine's load and the connected sessions, and do
//! what the answers say: drain (take no new clients) or terminate (stop
//! serving, exit 0).

use crate::load::LoadSampler;
use crate::scheduler::{CallError, Heartbeat, HeartbeatAnswer, Registered, Registration};
use crate::state::AgentState;
use actix_web::dev::ServerHandle;
use platform::Shutdown;
use secrecy::SecretString;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::MissedTickBehavior;

/// Registration retries start this soon and back off to at most this.
const FIRST_RETRY: Duration = Duration::from_millis(500);
const LONGEST_RETRY: Duration = Duration::from_secs(5);
/// However often the scheduler (or `HEARTBEAT_INTERVAL_SECS`) asks.
const SHORTEST_HEARTBEAT: Duration = Duration::from_secs(1);

/// Doubling waits between attempts, capped.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    longest: Duration,
}

impl Backoff {
    pub fn new(first: Duration, longest: Duration) -> Self {
        Self {
            next: first.min(longest),
            longest,
        }
    }

    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(self.longest);
        wait
    }
}

/// Why the agent stopped by itself, if it did: read once the server has
/// stopped, to turn it into the exit status.
#[derive(Clone, Debug, Default)]
pub struct Fatal(Arc<Mutex<Option<String>>>);

impl Fatal {
    fn set(&self, reason: String) {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *slot = Some(reason);
    }

    pub fn take(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

enum Registering {
    Done(Registered),
    Refused(CallError),
    /// The service is shutting down.
    Stopped,
}

/// Everything the loop works with; [`AgentLoop::run`] is spawned beside
/// the server at startup.
pub struct AgentLoop {
    pub state: AgentState,
    pub registration: Registration,
    pub secret: SecretString,
    /// `HEARTBEAT_INTERVAL_SECS`; otherwise the scheduler's interval.
    pub heartbeat_override: Option<Duration>,
    pub sampler: LoadSampler,
    /// Stops the server when the scheduler says terminate, or refuses
    /// the registration.
    pub server: ServerHandle,
    pub fatal: Fatal,
    pub shutdown: Shutdown,
    /// Whether "drained" has been logged since draining began.
    drained_logged: bool,
}

impl AgentLoop {
    pub fn new(
        state: AgentState,
        registration: Registration,
        secret: SecretString,
        heartbeat_override: Option<Duration>,
        server: ServerHandle,
        fatal: Fatal,
        shutdown: Shutdown,
    ) -> Self {
        Self {
            state,
            registration,
            secret,
            heartbeat_override,
            // The first CPU reading, so the first heartbeat measures from now.
            sampler: LoadSampler::new(),
            server,
            fatal,
            shutdown,
            drained_logged: false,
        }
    }

    /// Registers, then heartbeats until the scheduler says terminate or
    /// the service shuts down.
    pub async fn run(mut self) {
        let registered = match self.register().await {
            Registering::Done(registered) => registered,
            Registering::Refused(err) => {
                // Asking again would be refused again: stop, and let `main`
                // say why in one line and exit 1.
                self.fatal.set(format!("cannot register: {err}"));
                self.server.stop(false).await;
                return;
            }
            Registering::Stopped => return,
        };
        let interval = self
            .heartbeat_override
            .unwrap_or(registered.heartbeat_interval)
            .max(SHORTEST_HEARTBEAT);
        tracing::info!(
            instance = %registered.id,
            address = %self.registration.address,
            heartbeat_ms = interval.as_millis() as u64,
            "registered with the scheduler"
        );
        self.state.set_registered(registered.clone());
        let tokens = self.state.tokens().clone();
        tokio::spawn(async move { tokens.warm_up().await });
        self.heartbeat(&registered, interval).await;
    }

    async fn register(&self) -> Registering {
        let mut backoff = Backoff::new(FIRST_RETRY, LONGEST_RETRY);
        let attempts = &self.state.metrics().registrations;
        loop {
            let attempt = self
                .state
                .scheduler()
                .register(&self.secret, &self.registration)
                .await;
            match attempt {
                Ok(registered) => {
                    attempts.with_label_values(&["registered"]).inc();
                    return Registering::Done(registered);
                }
                Err(err) if err.is_refusal() => {
                    attempts.with_label_values(&["refused"]).inc();
                    return Registering::Refused(err);
                }
                Err(err) => {
                    attempts.with_label_values(&["unavailable"]).inc();
                    let wait = backoff.next_wait();
                    tracing::warn!(
                        error = %err,
                        retry_in_ms = wait.as_millis() as u64,
                        "cannot register yet"
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.shutdown.wait() => return Registering::Stopped,
                    }
                }
            }
        }
    }

    /// The first heartbeat right away, then one every `interval`; one
    /// that is slow delays the next rather than piling up.
    async fn heartbeat(&mut self, instance: &Registered, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = self.shutdown.wait() => return,
            }
            // A failed heartbeat is logged and the next tick tries again.
            let Some(answer) = self.beat(instance).await else {
                continue;
            };
            if answer.terminate {
                tracing::info!(instance = %instance.id, "the scheduler says terminate: stopping");
                self.state.mark_terminating();
                // Graceful: stop accepting, finish the requests in flight.
                self.server.stop(true).await;
                return;
            }
            for session in &answer.ended {
                if self.state.remove_session(*session) {
                    tracing::info!(%session, "the scheduler ended the session");
                }
            }
            self.follow_drain(answer.drain);
        }
    }

    async fn beat(&mut self, instance: &Registered) -> Option<HeartbeatAnswer> {
        let load = self.sampler.sample();
        let metrics = self.state.metrics();
        metrics.cpu_percent.set(load.cpu_pct);
        metrics.memory_percent.set(load.mem_pct);
        let heartbeat = Heartbeat {
            cpu_pct: load.cpu_pct,
            mem_pct: load.mem_pct,
            sessions: self.state.sessions(),
        };
        match self.state.scheduler().heartbeat(instance, &heartbeat).await {
            Ok(answer) => {
                metrics.heartbeats.with_label_values(&["ok"]).inc();
                Some(answer)
            }
            Err(err) => {
                let outcome = if err.is_refusal() {
                    "refused"
                } else {
                    "unavailable"
                };
                metrics.heartbeats.with_label_values(&[outcome]).inc();
                tracing::warn!(error = %err, "heartbeat failed; trying again at the next tick");
                None
            }
        }
    }

    /// Draining takes no new clients; the sessions connected stay until
    /// they leave, and once none is left the agent keeps heartbeating: it
    /// is the scheduler that ends the instance, with a terminate.
    fn follow_drain(&mut self, drain: bool) {
        if self.state.set_draining(drain) {
            self.drained_logged = false;
            if drain {
                tracing::info!(
                    sessions = self.state.session_count(),
                    "the scheduler says drain: taking no new clients"
                );
            } else {
                tracing::info!("no longer draining: taking clients again");
            }
        }
        if drain && !self.drained_logged && self.state.session_count() == 0 {
            self.drained_logged = true;
            tracing::info!("drained: no session left; waiting for the scheduler to terminate");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_from_half_a_second_to_five() {
        let mut backoff = Backoff::new(FIRST_RETRY, LONGEST_RETRY);
        let waits: Vec<u128> = (0..6).map(|_| backoff.next_wait().as_millis()).collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 5000, 5000]);
    }

    #[test]
    fn a_fatal_reason_is_read_once() {
        let fatal = Fatal::default();
        assert_eq!(fatal.take(), None);
        fatal.set("refused".into());
        assert_eq!(fatal.clone().take().as_deref(), Some("refused"));
        assert_eq!(fatal.take(), None);
    }
}
