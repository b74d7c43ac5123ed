use crate::domain::secret::Secret;
use crate::schema::{refresh_tokens, sessions};
use crate::store::users::{self, UserRow};
use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use domain::{SessionId, UserId};
use uuid::Uuid;

#[derive(Queryable, QueryableByName, Selectable, Debug, Clone)]
#[diesel(table_name = sessions, check_for_backend(diesel::pg::Pg))]
pub struct SessionRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_reason: Option<String>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

impl SessionRow {
    pub fn session_id(&self) -> SessionId {
        SessionId(self.id)
    }

    /// Active: not revoked, inside both the absolute and the idle limit.
    pub fn is_live(&self, now: DateTime<Utc>, idle: Duration) -> bool {
        self.revoked_at.is_none() && self.expires_at > now && self.last_used_at + idle > now
    }
}

/// Where a login came from, recorded on the session.
#[derive(Debug, Clone, Default)]
pub struct Client {
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

/// Opens a session and issues its first refresh token, in one statement
/// (login is hot: every round trip counts).
pub fn open(
    conn: &mut PgConnection,
    user_id: UserId,
    absolute: Duration,
    client: &Client,
) -> QueryResult<(SessionRow, Secret)> {
    use diesel::sql_types::{Bytea, Nullable, Text, Timestamptz, Uuid as SqlUuid};
    let secret = Secret::generate();
    let session = diesel::sql_query(
        "WITH s AS (INSERT INTO sessions (id, user_id, expires_at, user_agent, ip) \
                    VALUES ($1, $2, $3, $4, $5) RETURNING *), \
              r AS (INSERT INTO refresh_tokens (token_hash, session_id) SELECT $6, id FROM s) \
         SELECT * FROM s",
    )
    .bind::<SqlUuid, _>(SessionId::new().as_uuid())
    .bind::<SqlUuid, _>(user_id.as_uuid())
    .bind::<Timestamptz, _>(Utc::now() + absolute)
    .bind::<Nullable<Text>, _>(client.user_agent.as_deref())
    .bind::<Nullable<Text>, _>(client.ip.as_deref())
    .bind::<Bytea, _>(secret.hash())
    .get_result::<SessionRow>(conn)?;
    Ok((session, secret))
}

fn issue_refresh(conn: &mut PgConnection, session_id: SessionId) -> QueryResult<Secret> {
    let secret = Secret::generate();
    diesel::insert_into(refresh_tokens::table)
        .values((
            refresh_tokens::token_hash.eq(secret.hash()),
            refresh_tokens::session_id.eq(session_id.as_uuid()),
        ))
        .execute(conn)?;
    Ok(secret)
}

#[derive(Debug)]
pub struct Rotated {
    pub session: SessionRow,
    pub user: UserRow,
    pub secret: Secret,
}

#[derive(Debug)]
pub enum Rotation {
    Rotated(Box<Rotated>),
    /// The token had been rotated already: the session is now revoked.
    Reused,
    /// Unknown token, or its session ended or was revoked, or the account is disabled.
    Rejected,
}

/// Exchanges a refresh token for a new one. Call inside a transaction: the
/// conditional update makes concurrent uses of one token race for a single
/// row, so at most one wins.
pub fn rotate(
    conn: &mut PgConnection,
    presented: &Secret,
    idle: Duration,
) -> QueryResult<Rotation> {
    let hash = presented.hash();
    let claimed: Option<Uuid> = diesel::update(
        refresh_tokens::table
            .find(&hash)
            .filter(refresh_tokens::used_at.is_null()),
    )
    .set(refresh_tokens::used_at.eq(diesel::dsl::now))
    .returning(refresh_tokens::session_id)
    .get_result(conn)
    .optional()?;
    let Some(session_id) = claimed else {
        let known: Option<Uuid> = refresh_tokens::table
            .find(&hash)
            .select(refresh_tokens::session_id)
            .first(conn)
            .optional()?;
        return match known {
            Some(session_id) => {
                revoke(conn, SessionId(session_id), "refresh_token_reuse")?;
                Ok(Rotation::Reused)
            }
            None => Ok(Rotation::Rejected),
        };
    };
    let session: SessionRow = sessions::table
        .find(session_id)
        .select(SessionRow::as_select())
        .for_update()
        .first(conn)?;
    let now = Utc::now();
    if !session.is_live(now, idle) {
        if session.revoked_at.is_none() {
            revoke(conn, session.session_id(), "expired")?;
        }
        return Ok(Rotation::Rejected);
    }
    let Some(user) = users::find(conn, UserId(session.user_id))? else {
        return Ok(Rotation::Rejected);
    };
    if !user.is_active() {
        revoke(conn, session.session_id(), "account_disabled")?;
        return Ok(Rotation::Rejected);
    }
    let session = diesel::update(sessions::table.find(session_id))
        .set(sessions::last_used_at.eq(now))
        .returning(SessionRow::as_returning())
        .get_result(conn)?;
    let secret = issue_refresh(conn, session.session_id())?;
    Ok(Rotation::Rotated(Box::new(Rotated {
        session,
        user,
        secret,
    })))
}

pub fn find(conn: &mut PgConnection, id: SessionId) -> QueryResult<Option<SessionRow>> {
    sessions::table
        .find(id.as_uuid())
        .select(SessionRow::as_select())
        .first(conn)
        .optional()
}

/// The session a refresh token belongs to, whatever its state.
pub fn find_by_refresh(
    conn: &mut PgConnection,
    presented: &Secret,
) -> QueryResult<Option<SessionId>> {
    refresh_tokens::table
        .find(presented.hash())
        .select(refresh_tokens::session_id)
        .first::<Uuid>(conn)
        .optional()
        .map(|id| id.map(SessionId))
}

pub fn revoke(conn: &mut PgConnection, id: SessionId, reason: &str) -> QueryResult<usize> {
    diesel::update(
        sessions::table
            .find(id.as_uuid())
            .filter(sessions::revoked_at.is_null()),
    )
    .set((
        sessions::revoked_at.eq(diesel::dsl::now),
        sessions::revoked_reason.eq(reason),
    ))
    .execute(conn)
}

/// Revokes every session of a user, except `keep` when given.
pub fn revoke_all(
    conn: &mut PgConnection,
    user_id: UserId,
    keep: Option<SessionId>,
    reason: &str,
) -> QueryResult<usize> {
    let keep = keep.map(|s| s.as_uuid()).unwrap_or_else(Uuid::nil);
    diesel::update(
        sessions::table
            .filter(sessions::user_id.eq(user_id.as_uuid()))
            .filter(sessions::revoked_at.is_null())
            .filter(sessions::id.ne(keep)),
    )
    .set((
        sessions::revoked_at.eq(diesel::dsl::now),
        sessions::revoked_reason.eq(reason),
    ))
    .execute(conn)
}

/// A first page asked for: whose sessions, and at most how many.
pub type PageKey = (UserId, i64);

/// The first page of live sessions, newest first, of each `(user, limit)`
/// asked for, in one query for reads gathered by `platform::db::batch`
/// (later pages: [`list_live_after`]). Users without live sessions are
/// absent from the result.
pub fn first_live_pages(
    conn: &mut PgConnection,
    pages: &[PageKey],
    idle: Duration,
) -> QueryResult<Vec<(PageKey, Vec<SessionRow>)>> {
    use diesel::sql_types::{Array, BigInt, Timestamptz, Uuid as SqlUuid};
    let users: Vec<Uuid> = pages.iter().map(|(user, _)| user.as_uuid()).collect();
    let limits: Vec<i64> = pages.iter().map(|(_, limit)| *limit).collect();
    let now = Utc::now();
    #[derive(QueryableByName)]
    struct Ranked {
        #[diesel(embed)]
        session: SessionRow,
        #[diesel(sql_type = BigInt)]
        page_limit: i64,
    }
    let rows: Vec<Ranked> = diesel::sql_query(
        "SELECT s.*, page.page_limit \
         FROM unnest($1::uuid[], $2::bigint[]) WITH ORDINALITY AS page (user_id, page_limit, n) \
         CROSS JOIN LATERAL ( \
             SELECT id, user_id, created_at, last_used_at, expires_at, revoked_at, \
                    revoked_reason, user_agent, ip \
             FROM sessions \
             WHERE user_id = page.user_id AND revoked_at IS NULL \
               AND expires_at > $3 AND last_used_at > $4 \
             ORDER BY id DESC LIMIT page.page_limit) AS s \
         ORDER BY page.n, s.id DESC",
    )
    .bind::<Array<SqlUuid>, _>(users)
    .bind::<Array<BigInt>, _>(limits)
    .bind::<Timestamptz, _>(now)
    .bind::<Timestamptz, _>(now - idle)
    .load(conn)?;
    // Rows come page by page (ORDER BY page.n), newest first within each.
    let mut found: Vec<(PageKey, Vec<SessionRow>)> = Vec::new();
    for row in rows {
        let key = (UserId(row.session.user_id), row.page_limit);
        match found.last_mut() {
            Some((last, sessions)) if *last == key => sessions.push(row.session),
            _ => found.push((key, vec![row.session])),
        }
    }
    Ok(found)
}

/// Live sessions of a user older than `cursor`, newest first (session ids
/// are time-ordered UUIDv7): the pages after the first, which
/// [`first_live_pages`] reads. A static query, so diesel keeps it prepared.
pub fn list_live_after(
    conn: &mut PgConnection,
    user_id: UserId,
    idle: Duration,
    cursor: Uuid,
    limit: i64,
) -> QueryResult<Vec<SessionRow>> {
    let now = Utc::now();
    sessions::table
        .filter(sessions::user_id.eq(user_id.as_uuid()))
        .filter(sessions::revoked_at.is_null())
        .filter(sessions::expires_at.gt(now))
        .filter(sessions::last_used_at.gt(now - idle))
        .filter(sessions::id.lt(cursor))
        .select(SessionRow::as_select())
        .order(sessions::id.desc())
        .limit(limit)
        .load(conn)
}
