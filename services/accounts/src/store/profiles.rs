use crate::schema::profiles;
use chrono::{DateTime, Utc};
use diesel::dsl::{sql, AsSelect, IntoBoxed, Select};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Text};
use domain::messages::UserRegistered;
use domain::values::check_plain_text;
use domain::{AccountStatus, Role, UserId, ValueError};
use serde::Serialize;
use uuid::Uuid;

#[derive(Queryable, Selectable, Debug, Clone)]
#[diesel(table_name = profiles, check_for_backend(Pg))]
pub struct ProfileRow {
    pub id: Uuid,
    pub email: Option<String>,
    pub display_name: String,
    pub avatar_url: Option<String>,
    pub locale: Option<String>,
    pub timezone: Option<String>,
    pub roles: Vec<Option<String>>,
    pub status: AccountStatus,
    pub email_verified: bool,
    pub revision: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The profile object of the API.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Profile {
    pub id: Uuid,
    pub email: Option<String>,
    pub display_name: String,
    pub avatar_url: Option<String>,
    pub locale: Option<String>,
    pub timezone: Option<String>,
    pub roles: Vec<Role>,
    pub status: AccountStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl ProfileRow {
    pub fn roles(&self) -> Vec<Role> {
        domain::role::parse_roles(self.roles.iter().flatten().map(String::as_str))
    }

    pub fn to_profile(&self) -> Profile {
        Profile {
            id: self.id,
            email: self.email.clone(),
            display_name: self.display_name.clone(),
            avatar_url: self.avatar_url.clone(),
            locale: self.locale.clone(),
            timezone: self.timezone.clone(),
            roles: self.roles(),
            status: self.status,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

fn role_names(roles: &[Role]) -> Vec<Option<String>> {
    roles.iter().map(|r| Some(r.as_str().to_string())).collect()
}

/// Creates the profile of a new user; `false` if it already exists.
pub fn create_from(conn: &mut PgConnection, event: &UserRegistered) -> QueryResult<bool> {
    diesel::insert_into(profiles::table)
        .values((
            profiles::id.eq(event.user_id),
            profiles::email.eq(event.email.as_deref()),
            profiles::display_name.eq(&event.display_name),
            profiles::roles.eq(role_names(&event.roles)),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .map(|n| n == 1)
}

pub fn mark_email_verified(conn: &mut PgConnection, id: Uuid) -> QueryResult<usize> {
    diesel::update(profiles::table.find(id))
        .set(profiles::email_verified.eq(true))
        .execute(conn)
}

/// The profiles of `ids` that exist, keyed by id (reads by id go through
/// `platform::db::batch`, which gathers them).
pub fn find_many(
    conn: &mut PgConnection,
    ids: &[UserId],
) -> QueryResult<Vec<(UserId, ProfileRow)>> {
    let ids: Vec<Uuid> = ids.iter().map(|id| id.as_uuid()).collect();
    let rows: Vec<ProfileRow> = profiles::table
        .filter(profiles::id.eq_any(ids))
        .select(ProfileRow::as_select())
        .load(conn)?;
    Ok(rows.into_iter().map(|row| (UserId(row.id), row)).collect())
}

/// Locks the row for a change in this transaction.
pub fn find_for_update(conn: &mut PgConnection, id: UserId) -> QueryResult<Option<ProfileRow>> {
    profiles::table
        .find(id.as_uuid())
        .select(ProfileRow::as_select())
        .for_update()
        .first(conn)
        .optional()
}

/// Self-service fields; `None` leaves a field as it is.
#[derive(Debug, Default, Clone, AsChangeset)]
#[diesel(table_name = profiles)]
pub struct ProfileChanges {
    pub display_name: Option<String>,
    pub avatar_url: Option<Option<String>>,
    pub locale: Option<Option<String>>,
    pub timezone: Option<Option<String>>,
}

impl ProfileChanges {
    pub fn is_empty(&self) -> bool {
        self.display_name.is_none()
            && self.avatar_url.is_none()
            && self.locale.is_none()
            && self.timezone.is_none()
    }
}

pub fn update_profile(
    conn: &mut PgConnection,
    id: UserId,
    changes: &ProfileChanges,
) -> QueryResult<ProfileRow> {
    diesel::update(profiles::table.find(id.as_uuid()))
        .set((
            changes,
            profiles::revision.eq(profiles::revision + 1),
            profiles::updated_at.eq(diesel::dsl::now),
        ))
        .returning(ProfileRow::as_returning())
        .get_result(conn)
}

pub fn set_roles(conn: &mut PgConnection, id: UserId, roles: &[Role]) -> QueryResult<ProfileRow> {
    diesel::update(profiles::table.find(id.as_uuid()))
        .set((
            profiles::roles.eq(role_names(roles)),
            profiles::revision.eq(profiles::revision + 1),
            profiles::updated_at.eq(diesel::dsl::now),
        ))
        .returning(ProfileRow::as_returning())
        .get_result(conn)
}

pub fn set_status(
    conn: &mut PgConnection,
    id: UserId,
    status: AccountStatus,
) -> QueryResult<ProfileRow> {
    diesel::update(profiles::table.find(id.as_uuid()))
        .set((
            profiles::status.eq(status),
            profiles::revision.eq(profiles::revision + 1),
            profiles::updated_at.eq(diesel::dsl::now),
        ))
        .returning(ProfileRow::as_returning())
        .get_result(conn)
}

/// What a directory search looks for: trimmed, 1 to 254 characters, no
/// control characters (PostgreSQL text cannot hold NUL, and no email or
/// display name holds any of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchTerm(String);

impl SearchTerm {
    pub const MAX_CHARS: usize = 254;

    /// `None` for a blank term: no search, the whole directory.
    pub fn parse(raw: &str) -> Result<Option<Self>, ValueError> {
        let term = raw.trim();
        if term.is_empty() {
            return Ok(None);
        }
        check_plain_text(term, Self::MAX_CHARS)?;
        Ok(Some(Self(term.to_string())))
    }
}

/// Directory filters.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// Matched case-insensitively anywhere in the email or display name.
    pub q: Option<SearchTerm>,
    pub role: Option<Role>,
    pub status: Option<AccountStatus>,
}

fn like_pattern(q: &SearchTerm) -> String {
    let escaped =
        q.0.to_lowercase()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
    format!("%{escaped}%")
}

/// The directory search as one query, for [`search`] and for the tests
/// that check its plan.
pub type SearchQuery<'a> = IntoBoxed<'a, Select<profiles::table, AsSelect<ProfileRow, Pg>>, Pg>;

/// A page in id order after `cursor`. Ids are time-ordered, so rows
/// inserted while a client pages land after its cursor: no duplicates and
/// no gaps among the rows that were there.
pub fn search(
    conn: &mut PgConnection,
    filter: &Filter,
    cursor: Option<Uuid>,
    limit: i64,
) -> QueryResult<Vec<ProfileRow>> {
    search_query(filter, cursor, limit).load(conn)
}

pub fn search_query(filter: &Filter, cursor: Option<Uuid>, limit: i64) -> SearchQuery<'static> {
    let mut query = profiles::table
        .select(ProfileRow::as_select())
        .order(profiles::id.asc())
        .limit(limit)
        .into_boxed();
    if let Some(q) = &filter.q {
        let pattern = like_pattern(q);
        query = query.filter(
            sql::<Bool>("(lower(email) LIKE ")
                .bind::<Text, _>(pattern.clone())
                .sql(" OR lower(display_name) LIKE ")
                .bind::<Text, _>(pattern)
                .sql(")"),
        );
    }
    if let Some(role) = filter.role {
        query = query.filter(profiles::roles.contains(vec![Some(role.as_str().to_string())]));
    }
    if let Some(status) = filter.status {
        query = query.filter(profiles::status.eq(status));
    }
    if let Some(cursor) = cursor {
        query = query.filter(profiles::id.gt(cursor));
    }
    query
}

#[cfg(test)]
mod tests {
    use super::{like_pattern, SearchTerm};

    fn term(raw: &str) -> SearchTerm {
        match SearchTerm::parse(raw) {
            Ok(Some(term)) => term,
            other => panic!("{raw:?} should be a search term, got {other:?}"),
        }
    }

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern(&term(" A_b%c\\ ")), "%a\\_b\\%c\\\\%");
    }

    #[test]
    fn search_terms_are_trimmed_and_blank_means_none() {
        assert_eq!(SearchTerm::parse("  \t "), Ok(None));
        assert_eq!(term("  Ann "), SearchTerm("Ann".into()));
    }

    #[test]
    fn search_terms_refuse_control_characters_and_overlong_text() {
        for raw in ["a\0b", "\u{0}", "x\u{7f}y", "line\nbreak"] {
            assert!(SearchTerm::parse(raw).is_err(), "{raw:?} was accepted");
        }
        assert!(SearchTerm::parse(&"é".repeat(254)).is_ok());
        assert!(SearchTerm::parse(&"é".repeat(255)).is_err());
    }
}
