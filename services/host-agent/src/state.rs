//! What the handlers and the heartbeat loop share, in memory only: the
//! agent keeps no database, and after a restart it is a new instance (it
//! registers again), so nothing here needs to outlive the process.

use crate::metrics::AgentMetrics;
use crate::scheduler::{Registered, SchedulerClient};
use crate::tokens::ConnectionTokens;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use uuid::Uuid;

/// Whether the agent takes new clients, and if not, why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serving {
    /// Registered, neither draining nor told to terminate.
    Open,
    /// Not registered yet: the instance id (the audience of its tokens)
    /// is not known.
    Registering,
    /// The scheduler said drain.
    Draining,
    /// The scheduler said terminate; the server is stopping.
    Terminating,
}

/// Cheap to clone.
#[derive(Clone)]
pub struct AgentState(Arc<Inner>);

struct Inner {
    scheduler: SchedulerClient,
    tokens: ConnectionTokens,
    metrics: AgentMetrics,
    /// Set once, when registration succeeds.
    registered: OnceLock<Registered>,
    /// Connected sessions, reported in every heartbeat.
    sessions: Mutex<BTreeSet<Uuid>>,
    /// Sessions whose connect report got no answer: the scheduler may
    /// have marked them connected. A retry that the scheduler answers
    /// `already_used` is then the same client, let in.
    in_doubt: Mutex<BTreeSet<Uuid>>,
    draining: AtomicBool,
    terminating: AtomicBool,
}

impl AgentState {
    pub fn new(
        scheduler: SchedulerClient,
        tokens: ConnectionTokens,
        metrics: AgentMetrics,
    ) -> Self {
        Self(Arc::new(Inner {
            scheduler,
            tokens,
            metrics,
            registered: OnceLock::new(),
            sessions: Mutex::new(BTreeSet::new()),
            in_doubt: Mutex::new(BTreeSet::new()),
            draining: AtomicBool::new(false),
            terminating: AtomicBool::new(false),
        }))
    }

    pub fn scheduler(&self) -> &SchedulerClient {
        &self.0.scheduler
    }

    pub fn tokens(&self) -> &ConnectionTokens {
        &self.0.tokens
    }

    pub fn metrics(&self) -> &AgentMetrics {
        &self.0.metrics
    }

    /// The instance this agent is, once registered.
    pub fn registered(&self) -> Option<&Registered> {
        self.0.registered.get()
    }

    /// Records the registration; `false` if one was recorded already (it
    /// happens once per process).
    pub fn set_registered(&self, registered: Registered) -> bool {
        self.0.registered.set(registered).is_ok()
    }

    pub fn serving(&self) -> Serving {
        if self.0.terminating.load(Ordering::SeqCst) {
            Serving::Terminating
        } else if self.registered().is_none() {
            Serving::Registering
        } else if self.0.draining.load(Ordering::SeqCst) {
            Serving::Draining
        } else {
            Serving::Open
        }
    }

    /// Follows the scheduler's answer: `true` when that changed it.
    pub fn set_draining(&self, draining: bool) -> bool {
        self.0.draining.swap(draining, Ordering::SeqCst) != draining
    }

    pub fn mark_terminating(&self) {
        self.0.terminating.store(true, Ordering::SeqCst);
    }

    /// A poisoned lock only means a panic elsewhere while it was held; the
    /// set itself is always whole, so it is used as it is.
    fn sessions_guard(&self) -> MutexGuard<'_, BTreeSet<Uuid>> {
        self.0
            .sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn is_connected(&self, session: Uuid) -> bool {
        self.sessions_guard().contains(&session)
    }

    /// `false` if it was connected already.
    pub fn add_session(&self, session: Uuid) -> bool {
        let mut sessions = self.sessions_guard();
        let added = sessions.insert(session);
        self.0.metrics.connected_sessions.set(sessions.len() as i64);
        added
    }

    /// `false` if it was not connected.
    pub fn remove_session(&self, session: Uuid) -> bool {
        let mut sessions = self.sessions_guard();
        let removed = sessions.remove(&session);
        self.0.metrics.connected_sessions.set(sessions.len() as i64);
        removed
    }

    /// The connected sessions, for a heartbeat.
    pub fn sessions(&self) -> Vec<Uuid> {
        self.sessions_guard().iter().copied().collect()
    }

    pub fn session_count(&self) -> usize {
        self.sessions_guard().len()
    }

    fn in_doubt_guard(&self) -> MutexGuard<'_, BTreeSet<Uuid>> {
        self.0
            .in_doubt
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A connect report for `session` got no answer.
    pub fn report_in_doubt(&self, session: Uuid) {
        let mut in_doubt = self.in_doubt_guard();
        // Bounded: reservations last a minute, so old doubts are moot.
        if in_doubt.len() >= IN_DOUBT_AT_MOST {
            in_doubt.clear();
        }
        in_doubt.insert(session);
    }

    /// Whether a report for `session` was in doubt (and no longer is).
    pub fn settle_doubt(&self, session: Uuid) -> bool {
        self.in_doubt_guard().remove(&session)
    }
}

/// Connect reports in doubt remembered at most.
const IN_DOUBT_AT_MOST: usize = 4096;
