//! Versioned contracts of what crosses RabbitMQ. The envelope is the same for
//! events (exchange `events`, routing key = type) and jobs (exchange `jobs`,
//! routing key = queue).

use crate::role::Role;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

/// Where a message is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Topic exchange `events`, routing key = the message type.
    Event,
    /// Direct exchange `jobs`, routing key = the queue name.
    Job { queue: &'static str },
}

/// A message type with a stable name and version.
pub trait Contract: Serialize + DeserializeOwned + Send + Sync + 'static {
    const TYPE: &'static str;
    const VERSION: u32;
    const ROUTE: Route;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub type_: String,
    pub version: u32,
    pub occurred_at: DateTime<Utc>,
    pub data: T,
}

impl<T: Contract> Envelope<T> {
    pub fn new(data: T) -> Self {
        Self {
            id: Uuid::now_v7(),
            type_: T::TYPE.to_string(),
            version: T::VERSION,
            occurred_at: Utc::now(),
            data,
        }
    }
}

/// How a user came to exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserKind {
    Registered,
    Visitor,
    Admin,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRegistered {
    pub user_id: Uuid,
    pub email: Option<String>,
    pub display_name: String,
    pub roles: Vec<Role>,
    pub kind: UserKind,
}

impl Contract for UserRegistered {
    const TYPE: &'static str = "user.registered";
    const VERSION: u32 = 1;
    const ROUTE: Route = Route::Event;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserEmailVerified {
    pub user_id: Uuid,
    pub email: String,
}

impl Contract for UserEmailVerified {
    const TYPE: &'static str = "user.email_verified";
    const VERSION: u32 = 1;
    const ROUTE: Route = Route::Event;
}

/// Account events carry the account's `revision`, which grows with every
/// change, so a consumer can ignore one that arrives after a newer one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRolesChanged {
    pub user_id: Uuid,
    pub roles: Vec<Role>,
    pub revision: i64,
}

impl Contract for AccountRolesChanged {
    const TYPE: &'static str = "account.roles_changed";
    const VERSION: u32 = 1;
    const ROUTE: Route = Route::Event;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountDisabled {
    pub user_id: Uuid,
    pub revision: i64,
}

impl Contract for AccountDisabled {
    const TYPE: &'static str = "account.disabled";
    const VERSION: u32 = 1;
    const ROUTE: Route = Route::Event;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountEnabled {
    pub user_id: Uuid,
    pub revision: i64,
}

impl Contract for AccountEnabled {
    const TYPE: &'static str = "account.enabled";
    const VERSION: u32 = 1;
    const ROUTE: Route = Route::Event;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountProfileUpdated {
    pub user_id: Uuid,
    pub display_name: String,
    pub avatar_url: Option<String>,
    pub locale: Option<String>,
    pub timezone: Option<String>,
    pub revision: i64,
}

impl Contract for AccountProfileUpdated {
    const TYPE: &'static str = "account.profile_updated";
    const VERSION: u32 = 1;
    const ROUTE: Route = Route::Event;
}

/// A visitor opened a support chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatRoomOpened {
    pub room_id: Uuid,
    pub visitor_id: Uuid,
    pub priority: String,
    pub subject: Option<String>,
    pub opened_at: DateTime<Utc>,
}

impl Contract for ChatRoomOpened {
    const TYPE: &'static str = "chat.room_opened";
    const VERSION: u32 = 1;
    const ROUTE: Route = Route::Event;
}

/// A room got an assignee: at once, from the queue, by a claim or by a
/// transfer (`trigger`), with the reason of the choice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatRoomAssigned {
    pub room_id: Uuid,
    pub assignee_id: Uuid,
    pub previous_assignee_id: Option<Uuid>,
    pub trigger: String,
    pub reason: String,
    pub assigned_at: DateTime<Utc>,
}

impl Contract for ChatRoomAssigned {
    const TYPE: &'static str = "chat.room_assigned";
    const VERSION: u32 = 1;
    const ROUTE: Route = Route::Event;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatRoomClosed {
    pub room_id: Uuid,
    pub visitor_id: Uuid,
    pub assignee_id: Option<Uuid>,
    pub closed_by: Uuid,
    pub closed_at: DateTime<Utc>,
    pub messages: i64,
}

impl Contract for ChatRoomClosed {
    const TYPE: &'static str = "chat.room_closed";
    const VERSION: u32 = 1;
    const ROUTE: Route = Route::Event;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmailTemplate {
    VerifyEmail,
    PasswordReset,
    Welcome,
    ChatWaiting,
    ChatTranscript,
}

/// A job for the worker's `email` queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailJob {
    pub to: String,
    pub template: EmailTemplate,
    pub vars: BTreeMap<String, String>,
    pub idempotency_key: String,
}

impl Contract for EmailJob {
    const TYPE: &'static str = "email";
    const VERSION: u32 = 1;
    const ROUTE: Route = Route::Job { queue: "email" };
}

/// What a provisioning job asks of the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProvisioningAction {
    Launch,
    Terminate,
}

/// A job for the worker's `provisioning` queue, written by the scheduler's
/// reconciler. `request_id` makes it idempotent: the worker does each
/// request once. A launch names the instance the new host agent is to
/// fulfil (`instance_id`, `capacity`); a terminate, the instance to stop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisioningJob {
    pub request_id: Uuid,
    pub action: ProvisioningAction,
    pub region: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<i32>,
}

impl Contract for ProvisioningJob {
    const TYPE: &'static str = "provisioning";
    const VERSION: u32 = 1;
    const ROUTE: Route = Route::Job {
        queue: "provisioning",
    };
}

/// The worker could not launch an instance: its provider refused for a
/// reason no retry mends (no binary, no free port). A launch failing for
/// passing reasons is retried, and ends in `provisioning.dead`; the
/// scheduler gives it up after `LAUNCH_TIMEOUT_SECS`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceLaunchFailed {
    pub request_id: Uuid,
    pub instance_id: Uuid,
    pub region: String,
    pub error: String,
}

impl Contract for InstanceLaunchFailed {
    const TYPE: &'static str = "instance.launch_failed";
    const VERSION: u32 = 1;
    const ROUTE: Route = Route::Event;
}

/// An instance's process is gone: terminated as asked, or it exited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceTerminated {
    pub instance_id: Uuid,
    /// The terminate job that stopped it; none when it exited by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<Uuid>,
    pub region: String,
    pub reason: String,
}

impl Contract for InstanceTerminated {
    const TYPE: &'static str = "instance.terminated";
    const VERSION: u32 = 1;
    const ROUTE: Route = Route::Event;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_shape_is_the_contract() {
        let envelope = Envelope::new(AccountDisabled {
            user_id: Uuid::nil(),
            revision: 3,
        });
        let json = serde_json::to_value(&envelope).unwrap();
        assert_eq!(json["type"], "account.disabled");
        assert_eq!(json["version"], 1);
        assert_eq!(json["data"]["revision"], 3);
        assert!(json["occurred_at"].as_str().unwrap().ends_with('Z'));
    }
}
