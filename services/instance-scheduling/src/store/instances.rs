//! Instances: registration, credentials, heartbeats, drain and the fleet.

use crate::model::{Address, Instance, InstanceStatus, Provider, Region};
use crate::schema::instances;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use uuid::Uuid;

/// What a registering agent says of itself.
pub struct Registration {
    pub region: Region,
    pub capacity: i32,
    pub address: Address,
    pub instance_id: Option<Uuid>,
    pub provider: Option<Provider>,
    pub provider_ref: Option<String>,
    pub credential_hash: Vec<u8>,
}

/// What became of a registration.
pub enum Registered {
    /// A new instance, or the launch it fulfils; `launched_secs_ago` is
    /// set for a launch.
    Active {
        instance: Instance,
        launched_secs_ago: Option<f64>,
    },
    /// The instance named is not waiting for its agent (its status).
    NotProvisioning(InstanceStatus),
    /// No instance has the id named.
    Unknown,
}

#[derive(QueryableByName)]
struct Age {
    #[diesel(sql_type = diesel::sql_types::Double)]
    secs: f64,
}

pub fn register(conn: &mut PgConnection, registration: &Registration) -> QueryResult<Registered> {
    conn.transaction(|conn| {
        let Some(id) = registration.instance_id else {
            let instance = diesel::insert_into(instances::table)
                .values((
                    instances::id.eq(Uuid::now_v7()),
                    instances::region.eq(registration.region.as_str()),
                    instances::address.eq(registration.address.as_str()),
                    instances::provider.eq(registration
                        .provider
                        .as_ref()
                        .map_or("manual", Provider::as_str)),
                    instances::provider_ref.eq(registration.provider_ref.as_deref()),
                    instances::status.eq(InstanceStatus::Active),
                    instances::capacity.eq(registration.capacity),
                    instances::credential_hash.eq(&registration.credential_hash),
                    instances::last_heartbeat_at.eq(diesel::dsl::now),
                    instances::registered_at.eq(diesel::dsl::now),
                ))
                .returning(Instance::as_returning())
                .get_result(conn)?;
            return Ok(Registered::Active {
                instance,
                launched_secs_ago: None,
            });
        };
        let age: Option<Age> = diesel::sql_query(
            "SELECT extract(epoch FROM now() - created_at)::float8 AS secs FROM instances
             WHERE id = $1 AND status = 'provisioning' FOR UPDATE",
        )
        .bind::<diesel::sql_types::Uuid, _>(id)
        .get_result(conn)
        .optional()?;
        let Some(age) = age else {
            let status = instances::table
                .find(id)
                .select(instances::status)
                .first::<InstanceStatus>(conn)
                .optional()?;
            return Ok(status.map_or(Registered::Unknown, Registered::NotProvisioning));
        };
        let instance = diesel::update(instances::table.find(id))
            .set((
                instances::region.eq(registration.region.as_str()),
                instances::address.eq(registration.address.as_str()),
                instances::capacity.eq(registration.capacity),
                instances::status.eq(InstanceStatus::Active),
                instances::credential_hash.eq(&registration.credential_hash),
                instances::last_heartbeat_at.eq(diesel::dsl::now),
                instances::registered_at.eq(diesel::dsl::now),
            ))
            .returning(Instance::as_returning())
            .get_result(conn)?;
        if let Some(reference) = &registration.provider_ref {
            diesel::update(instances::table.find(id))
                .set(instances::provider_ref.eq(reference))
                .execute(conn)?;
        }
        Ok(Registered::Active {
            instance,
            launched_secs_ago: Some(age.secs),
        })
    })
}

/// The instance `id` if `credential_hash` is its credential's.
pub fn authenticated(
    conn: &mut PgConnection,
    id: Uuid,
    credential_hash: &[u8],
) -> QueryResult<Option<Instance>> {
    instances::table
        .find(id)
        .filter(instances::credential_hash.eq(credential_hash))
        .select(Instance::as_select())
        .first(conn)
        .optional()
}

/// Records a heartbeat of a live instance: its load and the database's
/// time. Its status, as the answer to the agent.
pub fn heartbeat(
    conn: &mut PgConnection,
    id: Uuid,
    cpu_pct: f32,
    mem_pct: f32,
) -> QueryResult<Option<InstanceStatus>> {
    diesel::update(instances::table.find(id))
        .filter(instances::status.eq_any([InstanceStatus::Active, InstanceStatus::Draining]))
        .set((
            instances::cpu_pct.eq(cpu_pct),
            instances::mem_pct.eq(mem_pct),
            instances::last_heartbeat_at.eq(diesel::dsl::now),
        ))
        .returning(instances::status)
        .get_result(conn)
        .optional()
}

pub fn find(conn: &mut PgConnection, id: Uuid) -> QueryResult<Option<Instance>> {
    instances::table
        .find(id)
        .select(Instance::as_select())
        .first(conn)
        .optional()
}

/// Instances in id order after `after`, optionally of one region and status.
pub fn list(
    conn: &mut PgConnection,
    region: Option<&Region>,
    status: Option<InstanceStatus>,
    after: Option<Uuid>,
    limit: i64,
) -> QueryResult<Vec<Instance>> {
    let mut query = instances::table.select(Instance::as_select()).into_boxed();
    if let Some(region) = region {
        query = query.filter(instances::region.eq(region.as_str().to_string()));
    }
    if let Some(status) = status {
        query = query.filter(instances::status.eq(status));
    }
    if let Some(after) = after {
        query = query.filter(instances::id.gt(after));
    }
    query.order(instances::id.asc()).limit(limit).load(conn)
}

/// Marks an active instance draining: it takes no new sessions. Draining
/// one that drains already changes nothing. `None` for an unknown id;
/// otherwise the instance as it now is.
pub fn drain(conn: &mut PgConnection, id: Uuid) -> QueryResult<Option<Instance>> {
    conn.transaction(|conn| {
        let drained = diesel::update(instances::table.find(id))
            .filter(instances::status.eq(InstanceStatus::Active))
            .set((
                instances::status.eq(InstanceStatus::Draining),
                instances::drain_started_at.eq(diesel::dsl::now),
            ))
            .returning(Instance::as_returning())
            .get_result(conn)
            .optional()?;
        match drained {
            Some(instance) => Ok(Some(instance)),
            None => find(conn, id),
        }
    })
}

/// One region of the fleet, over its active instances.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema, QueryableByName)]
pub struct RegionLoad {
    #[diesel(sql_type = Text)]
    pub region: String,
    #[diesel(sql_type = BigInt)]
    pub instances: i64,
    #[diesel(sql_type = BigInt)]
    pub capacity: i64,
    #[diesel(sql_type = BigInt)]
    pub used: i64,
    /// Launches asked for and not registered yet.
    #[diesel(sql_type = BigInt)]
    pub pending_launches: i64,
    /// Free slots on fresh active instances (heartbeat within the stale limit).
    #[serde(skip)]
    #[diesel(sql_type = BigInt)]
    pub fresh_free: i64,
}

pub fn fleet(conn: &mut PgConnection, stale_secs: i64) -> QueryResult<Vec<RegionLoad>> {
    diesel::sql_query(
        "SELECT region,
                count(*) FILTER (WHERE status = 'active') AS instances,
                coalesce(sum(capacity) FILTER (WHERE status = 'active'), 0)::bigint AS capacity,
                coalesce(sum(active_sessions) FILTER (WHERE status = 'active'), 0)::bigint AS used,
                count(*) FILTER (WHERE status = 'provisioning') AS pending_launches,
                coalesce(sum(capacity - active_sessions) FILTER (
                    WHERE status = 'active' AND last_heartbeat_at > now() - make_interval(secs => $1)
                ), 0)::bigint AS fresh_free
         FROM instances
         WHERE status IN ('active', 'provisioning')
         GROUP BY region
         ORDER BY region",
    )
    .bind::<BigInt, _>(stale_secs)
    .load(conn)
}
