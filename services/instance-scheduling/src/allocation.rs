//! Allocation: a slot for a client, chosen by load, claimed in one
//! statement (`sched_allocate`, see the migration) that also writes the
//! session and the decision. The database refuses overflow (a CHECK on
//! `active_sessions <= capacity`) and a live session over the per-user
//! limit (a partial unique index on the user's slot numbers), so nothing
//! here has to be trusted for that.

use crate::config::Policy;
use crate::model::{App, Region};
use crate::store::sessions::{self, AllocationRow, Ask};
use chrono::{DateTime, Utc};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::{PgConnection, QueryResult};
use uuid::Uuid;

/// Tries of one allocation. A try fails on a unique index only when the
/// same user allocated at the same moment (the same key, or the same slot
/// number); the next try sees that allocation.
const TRIES: usize = 4;

/// What a client asks for.
pub struct Request {
    pub user: Uuid,
    pub region: Option<Region>,
    pub app: Option<App>,
    pub idempotency_key: Option<String>,
}

/// A slot held for a client.
#[derive(Debug, Clone)]
pub struct Allocation {
    pub session_id: Uuid,
    /// Allocated or connected (an idempotent retry may find it ended).
    pub live: bool,
    pub token_id: Uuid,
    pub expires_at: DateTime<Utc>,
    pub instance_id: Uuid,
    pub region: String,
    pub address: String,
}

#[derive(Debug)]
pub enum Outcome {
    /// A new allocation, and why it went there (`pack`, `spread`,
    /// `fallback_region`).
    Allocated(Allocation, String),
    /// A retry with the same idempotency key.
    Existing(Allocation),
    /// Nothing allocated: `user_limit`, `no_capacity`, `stale` or
    /// `region_full`.
    Refused(String),
}

impl Outcome {
    /// `(outcome, reason)` for the metrics.
    pub fn labels(&self) -> (&'static str, &str) {
        match self {
            Outcome::Allocated(_, reason) => ("allocated", reason),
            Outcome::Existing(_) => ("existing", "idempotent_retry"),
            Outcome::Refused(reason) => ("refused", reason),
        }
    }
}

fn parse(row: AllocationRow) -> QueryResult<Outcome> {
    let reason = row.reason.clone().unwrap_or_default();
    if row.outcome == "refused" {
        return Ok(Outcome::Refused(reason));
    }
    let live = matches!(
        row.session_status.as_deref(),
        Some("allocated" | "connected")
    );
    let allocation = match (
        row.session_id,
        row.token_id,
        row.expires_at,
        row.instance_id,
        row.region,
        row.address,
    ) {
        (
            Some(session_id),
            Some(token_id),
            Some(expires_at),
            Some(instance_id),
            Some(region),
            Some(address),
        ) => Allocation {
            session_id,
            live,
            token_id,
            expires_at,
            instance_id,
            region,
            address,
        },
        _ => {
            return Err(DieselError::DeserializationError(
                "sched_allocate answered an allocation without its session or instance".into(),
            ))
        }
    };
    Ok(if row.outcome == "existing" {
        Outcome::Existing(allocation)
    } else {
        Outcome::Allocated(allocation, reason)
    })
}

/// Allocates a slot for `request` under `policy`.
pub fn allocate(
    conn: &mut PgConnection,
    policy: &Policy,
    request: &Request,
) -> QueryResult<Outcome> {
    let regions = request
        .region
        .as_ref()
        .map(|region| policy.regions_for(region));
    let ask = Ask {
        user: request.user,
        regions: regions.as_deref(),
        app: request.app.as_ref().map(App::as_str),
        idempotency_key: request.idempotency_key.as_deref(),
        max_per_user: i32::try_from(policy.max_sessions_per_user).unwrap_or(i32::MAX),
        strategy: policy.strategy,
        stale_secs: secs(policy.heartbeat_stale),
        ttl_secs: secs(policy.reservation_ttl),
    };
    sessions::expire_reservations_of(conn, request.user)?;
    let mut tries = 0;
    loop {
        tries += 1;
        match sessions::allocate(conn, &ask) {
            Ok(row) => return parse(row),
            Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _))
                if tries < TRIES =>
            {
                continue
            }
            Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
                return Ok(Outcome::Refused("user_limit".into()))
            }
            Err(err) => return Err(err),
        }
    }
}

pub fn secs(duration: std::time::Duration) -> i32 {
    i32::try_from(duration.as_secs()).unwrap_or(i32::MAX)
}
