//! The agent's HTTP client of instance-scheduling: registration (with the
//! registration secret), heartbeats and the report that a client
//! connected (with the instance's own credential). The routes are
//! instance-scheduling's `routes/agents.rs`; their bodies are mirrored
//! here field for field, since the scheduler refuses unknown fields.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use uuid::Uuid;

/// The scheduler's routes are under this prefix of `SCHEDULER_URL`.
pub const API_PREFIX: &str = "/api/scheduling";

/// Longest wait for one answer of the scheduler. Heartbeats come every few
/// seconds and a client waits on the connect report: a scheduler slower
/// than this is treated as unreachable.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What the agent asks to be registered as.
#[derive(Debug, Clone, Serialize)]
pub struct Registration {
    pub region: String,
    pub capacity: u32,
    /// `host:port` where clients reach this agent.
    pub address: String,
    /// The `provisioning` instance a launch created, when the worker
    /// started this agent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_ref: Option<String>,
}

impl Registration {
    /// An agent the worker launched names its instance and itself as a
    /// process of this machine (the worker knows it by its pid); one
    /// started by hand names neither, and the scheduler makes a new
    /// instance of it.
    pub fn new(region: &str, capacity: u32, address: String, instance_id: Option<Uuid>) -> Self {
        let launched = instance_id.is_some();
        Self {
            region: region.to_string(),
            capacity,
            address,
            instance_id,
            provider: launched.then(|| "process".to_string()),
            provider_ref: launched.then(|| format!("pid:{}", std::process::id())),
        }
    }
}

/// The instance this agent is, once registered.
#[derive(Debug, Clone)]
pub struct Registered {
    pub id: Uuid,
    /// Its secret for heartbeats and reports; never logged.
    pub credential: SecretString,
    /// How often the scheduler wants heartbeats.
    pub heartbeat_interval: Duration,
}

#[derive(Deserialize)]
struct RegisteredBody {
    id: Uuid,
    credential: SecretString,
    heartbeat_interval_secs: u64,
}

/// A heartbeat: the machine's load and the sessions connected on it.
#[derive(Debug, Clone, Serialize)]
pub struct Heartbeat {
    pub cpu_pct: f64,
    pub mem_pct: f64,
    pub sessions: Vec<Uuid>,
}

/// What the scheduler answers a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct HeartbeatAnswer {
    /// Take no new clients.
    pub drain: bool,
    /// Stop now, and exit 0.
    pub terminate: bool,
    /// Sessions reported here that the scheduler has ended (the client
    /// ended it, the drain deadline, ...): no longer this agent's.
    #[serde(default)]
    pub ended: Vec<Uuid>,
}

/// What the scheduler answers a connect report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct ConnectedAnswer {
    pub session_id: Uuid,
    pub user_id: Uuid,
}

/// A call that did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No answer (connection refused, timeout), a 5xx, or an answer that
    /// cannot be read: worth trying again.
    #[error("the scheduler is unavailable: {0}")]
    Unavailable(String),
    /// A 4xx: asking again the same way gets the same answer.
    #[error("the scheduler refused: {status} {code}: {detail}")]
    Refused {
        status: u16,
        code: String,
        detail: String,
    },
}

impl CallError {
    pub fn is_refusal(&self) -> bool {
        matches!(self, CallError::Refused { .. })
    }

    /// The status of a refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            CallError::Refused { status, .. } => Some(*status),
            CallError::Unavailable(_) => None,
        }
    }

    /// The problem `code` of a refusal (`already_used`, ...).
    pub fn code(&self) -> Option<&str> {
        match self {
            CallError::Refused { code, .. } => Some(code.as_str()),
            CallError::Unavailable(_) => None,
        }
    }
}

/// The fields of the scheduler's problem+json the agent reads.
#[derive(Deserialize, Default)]
struct ProblemSummary {
    #[serde(default)]
    code: String,
    #[serde(default)]
    detail: String,
}

/// A reqwest error with its causes ("error sending request" alone does not
/// say "connection refused").
fn describe(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn unavailable(err: reqwest::Error) -> CallError {
    CallError::Unavailable(describe(&err))
}

/// Statuses that say "not now" rather than "no": a retry may succeed.
fn is_transient(status: reqwest::StatusCode) -> bool {
    status.is_server_error()
        || status == reqwest::StatusCode::REQUEST_TIMEOUT
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
}

/// The answer if it is a success, else the error it stands for.
async fn successful(response: reqwest::Response) -> Result<reqwest::Response, CallError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    if is_transient(status) {
        return Err(CallError::Unavailable(format!("it answered {status}")));
    }
    let problem = response.json::<ProblemSummary>().await.unwrap_or_default();
    Err(CallError::Refused {
        status: status.as_u16(),
        code: problem.code,
        detail: problem.detail,
    })
}

/// Cheap to clone (reqwest's client is shared).
#[derive(Clone, Debug)]
pub struct SchedulerClient {
    /// `SCHEDULER_URL` with the API prefix.
    base: String,
    http: reqwest::Client,
}

impl SchedulerClient {
    pub fn new(scheduler_url: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()?;
        Ok(Self {
            base: format!("{}{API_PREFIX}", scheduler_url.trim_end_matches('/')),
            http,
        })
    }

    /// Where the keys that sign connection tokens are published.
    pub fn jwks_url(&self) -> String {
        format!("{}/.well-known/jwks.json", self.base)
    }

    /// `POST /instances/register` with the registration secret.
    pub async fn register(
        &self,
        secret: &SecretString,
        registration: &Registration,
    ) -> Result<Registered, CallError> {
        let response = self
            .http
            .post(format!("{}/instances/register", self.base))
            .bearer_auth(secret.expose_secret())
            .json(registration)
            .send()
            .await
            .map_err(unavailable)?;
        let body: RegisteredBody = successful(response)
            .await?
            .json()
            .await
            .map_err(unavailable)?;
        Ok(Registered {
            id: body.id,
            credential: body.credential,
            heartbeat_interval: Duration::from_secs(body.heartbeat_interval_secs),
        })
    }

    /// `POST /instances/{id}/heartbeat` with the instance's credential.
    pub async fn heartbeat(
        &self,
        instance: &Registered,
        heartbeat: &Heartbeat,
    ) -> Result<HeartbeatAnswer, CallError> {
        let response = self
            .http
            .post(format!("{}/instances/{}/heartbeat", self.base, instance.id))
            .bearer_auth(instance.credential.expose_secret())
            .json(heartbeat)
            .send()
            .await
            .map_err(unavailable)?;
        successful(response)
            .await?
            .json()
            .await
            .map_err(unavailable)
    }

    /// `POST /instances/{id}/sessions/{session}/connected`: the session
    /// moves from allocated to connected, once. A second report is 409
    /// `already_used`; a reservation that is over, 410; a session of
    /// another instance, 404.
    pub async fn connected(
        &self,
        instance: &Registered,
        session: Uuid,
    ) -> Result<ConnectedAnswer, CallError> {
        let response = self
            .http
            .post(format!(
                "{}/instances/{}/sessions/{session}/connected",
                self.base, instance.id
            ))
            .bearer_auth(instance.credential.expose_secret())
            .send()
            .await
            .map_err(unavailable)?;
        successful(response)
            .await?
            .json()
            .await
            .map_err(unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_launched_agent_names_its_instance_and_process() {
        let id = Uuid::new_v4();
        let body =
            serde_json::to_value(Registration::new("eu", 4, "10.0.0.5:9101".into(), Some(id)))
                .unwrap();
        assert_eq!(body["instance_id"], id.to_string());
        assert_eq!(body["provider"], "process");
        assert_eq!(body["provider_ref"], format!("pid:{}", std::process::id()));
        assert_eq!(body["capacity"], 4);
    }

    #[test]
    fn an_agent_started_by_hand_sends_only_what_it_has() {
        let body =
            serde_json::to_value(Registration::new("local", 2, "127.0.0.1:9000".into(), None))
                .unwrap();
        let mut fields: Vec<&str> = body
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        fields.sort_unstable();
        assert_eq!(fields, ["address", "capacity", "region"]);
    }

    #[test]
    fn urls_are_under_the_api_prefix() {
        let client = SchedulerClient::new("http://127.0.0.1:8004/").unwrap();
        assert_eq!(
            client.jwks_url(),
            "http://127.0.0.1:8004/api/scheduling/.well-known/jwks.json"
        );
    }

    #[test]
    fn only_some_failures_are_worth_a_retry() {
        assert!(is_transient(reqwest::StatusCode::BAD_GATEWAY));
        assert!(is_transient(reqwest::StatusCode::TOO_MANY_REQUESTS));
        assert!(!is_transient(reqwest::StatusCode::UNAUTHORIZED));
        assert!(!is_transient(reqwest::StatusCode::CONFLICT));
    }
}
