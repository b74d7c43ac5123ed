//! Background loops: a task run every period, with jitter so that replicas
//! started together do not tick together, and, when asked, only in the one
//! replica that holds a PostgreSQL advisory lock (leader election for
//! reconcilers). The leader keeps the lock as long as its database session
//! lives; when it dies, even by `kill -9`, the server frees the lock and
//! another replica takes it at its next tick, so leadership moves within
//! one period.

use crate::db::advisory::LockSession;
use crate::Shutdown;
use std::future::Future;
use std::time::Duration;

/// A task to run every `period`.
#[derive(Debug)]
pub struct Periodic {
    name: &'static str,
    period: Duration,
    /// Each wait is `period` moved by up to this fraction either way.
    jitter: f64,
    leader: Option<LockSession>,
}

impl Periodic {
    /// Every `period`, with 10 % jitter, in every replica.
    pub fn every(name: &'static str, period: Duration) -> Self {
        Self {
            name,
            period,
            jitter: 0.1,
            leader: None,
        }
    }

    /// Jitter as a fraction of the period, 0 to 0.5.
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = fraction.clamp(0.0, 0.5);
        self
    }

    /// Runs the task only while this replica holds the advisory lock `key`
    /// in the database at `database_url`; every tick either confirms the
    /// lock (one round trip) or tries to take it.
    pub fn only_in_leader(mut self, database_url: &str, key: i64) -> Self {
        self.leader = Some(LockSession::new(database_url, key));
        self
    }

    /// Ticks until `shutdown`: the first after one period, then every
    /// period. A tick that is still running when the next is due delays it;
    /// ticks never overlap. On shutdown a leader's lock is released.
    pub async fn run<F, Fut>(mut self, shutdown: Shutdown, mut tick: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ()>,
    {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.next_wait()) => {}
                _ = shutdown.wait() => break,
            }
            if !self.leads().await {
                continue;
            }
            tick().await;
        }
        // Dropping the session releases the lock for the next leader.
        self.leader = None;
    }

    /// True when there is no election, or this replica holds the lock now.
    async fn leads(&mut self) -> bool {
        let name = self.name;
        let Some(session) = self.leader.as_mut() else {
            return true;
        };
        let was_leader = session.is_held();
        match session.hold().await {
            Ok(true) => {
                if !was_leader {
                    tracing::info!(task = name, "this replica now leads");
                }
                true
            }
            Ok(false) => false,
            Err(err) => {
                if was_leader {
                    tracing::warn!(task = name, error = %err, "leadership lost with the database session");
                } else {
                    tracing::debug!(task = name, error = %err, "cannot try for leadership");
                }
                false
            }
        }
    }

    fn next_wait(&self) -> Duration {
        // uniform in [-1, 1), from a v4 UUID's random bits
        let unit = (uuid::Uuid::new_v4().as_u128() >> 75) as f64 / (1u64 << 53) as f64;
        let spread = (unit * 2.0 - 1.0) * self.jitter;
        self.period.mul_f64((1.0 + spread).max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::Periodic;
    use std::time::Duration;

    #[test]
    fn waits_stay_within_the_jitter() {
        let periodic = Periodic::every("t", Duration::from_millis(1000)).jitter(0.2);
        let waits: Vec<Duration> = (0..200).map(|_| periodic.next_wait()).collect();
        assert!(waits.iter().all(|w| (800..=1200).contains(&w.as_millis())));
        assert!(waits.iter().any(|w| w.as_millis() < 950));
        assert!(waits.iter().any(|w| w.as_millis() > 1050));
    }
}
