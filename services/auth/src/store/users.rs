use crate::schema::users;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use domain::{AccountStatus, Role, UserId};
use serde::Serialize;
use uuid::Uuid;

#[derive(Queryable, Selectable, Debug, Clone)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub struct UserRow {
    pub id: Uuid,
    pub email: Option<String>,
    pub display_name: String,
    pub password_hash: Option<String>,
    pub roles: Vec<Option<String>>,
    pub status: AccountStatus,
    pub email_verified: bool,
    pub roles_revision: i64,
    pub status_revision: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl UserRow {
    pub fn user_id(&self) -> UserId {
        UserId(self.id)
    }

    pub fn roles(&self) -> Vec<Role> {
        domain::role::parse_roles(self.roles.iter().flatten().map(String::as_str))
    }

    pub fn is_active(&self) -> bool {
        self.status == AccountStatus::Active
    }

    pub fn to_public(&self) -> PublicUser {
        PublicUser {
            id: self.id,
            email: self.email.clone(),
            display_name: self.display_name.clone(),
            roles: self.roles(),
            email_verified: self.email_verified,
            created_at: self.created_at,
        }
    }
}

/// The `user` object of the API.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PublicUser {
    pub id: Uuid,
    pub email: Option<String>,
    pub display_name: String,
    pub roles: Vec<Role>,
    pub email_verified: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Insertable)]
#[diesel(table_name = users)]
pub struct NewUser {
    pub id: Uuid,
    pub email: Option<String>,
    pub display_name: String,
    pub password_hash: Option<String>,
    pub roles: Vec<Option<String>>,
    pub email_verified: bool,
}

impl NewUser {
    pub fn new(
        email: Option<String>,
        display_name: String,
        password_hash: Option<String>,
        roles: &[Role],
    ) -> Self {
        Self {
            id: UserId::new().as_uuid(),
            email,
            display_name,
            password_hash,
            roles: roles.iter().map(|r| Some(r.as_str().to_string())).collect(),
            email_verified: false,
        }
    }

    /// For an address known to be the person's (an admin made by an operator).
    pub fn verified(mut self) -> Self {
        self.email_verified = true;
        self
    }
}

pub fn insert(conn: &mut PgConnection, user: NewUser) -> QueryResult<UserRow> {
    diesel::insert_into(users::table)
        .values(user)
        .returning(UserRow::as_returning())
        .get_result(conn)
}

pub fn find(conn: &mut PgConnection, id: UserId) -> QueryResult<Option<UserRow>> {
    users::table
        .find(id.as_uuid())
        .select(UserRow::as_select())
        .first(conn)
        .optional()
}

pub fn find_by_email(conn: &mut PgConnection, email: &str) -> QueryResult<Option<UserRow>> {
    users::table
        .filter(users::email.eq(email))
        .select(UserRow::as_select())
        .first(conn)
        .optional()
}

pub fn set_password(conn: &mut PgConnection, id: UserId, hash: &str) -> QueryResult<usize> {
    diesel::update(users::table.find(id.as_uuid()))
        .set((
            users::password_hash.eq(hash),
            users::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
}

/// Sets `email_verified`; `None` if there is no such user.
pub fn mark_email_verified(conn: &mut PgConnection, id: UserId) -> QueryResult<Option<UserRow>> {
    diesel::update(users::table.find(id.as_uuid()))
        .set((
            users::email_verified.eq(true),
            users::updated_at.eq(diesel::dsl::now),
        ))
        .returning(UserRow::as_returning())
        .get_result(conn)
        .optional()
}

/// Applies a roles change from accounts unless a newer one was applied.
pub fn apply_roles(
    conn: &mut PgConnection,
    id: UserId,
    roles: &[Role],
    revision: i64,
) -> QueryResult<bool> {
    let names: Vec<Option<String>> = roles.iter().map(|r| Some(r.as_str().to_string())).collect();
    diesel::update(
        users::table
            .find(id.as_uuid())
            .filter(users::roles_revision.lt(revision)),
    )
    .set((
        users::roles.eq(names),
        users::roles_revision.eq(revision),
        users::updated_at.eq(diesel::dsl::now),
    ))
    .execute(conn)
    .map(|n| n == 1)
}

/// Applies an account status from accounts unless a newer one was applied.
pub fn apply_status(
    conn: &mut PgConnection,
    id: UserId,
    status: AccountStatus,
    revision: i64,
) -> QueryResult<bool> {
    diesel::update(
        users::table
            .find(id.as_uuid())
            .filter(users::status_revision.lt(revision)),
    )
    .set((
        users::status.eq(status),
        users::status_revision.eq(revision),
        users::updated_at.eq(diesel::dsl::now),
    ))
    .execute(conn)
    .map(|n| n == 1)
}
