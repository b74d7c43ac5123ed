//! Single-use tokens sent by email.

use crate::domain::secret::Secret;
use crate::schema::one_time_tokens;
use chrono::{Duration, Utc};
use diesel::prelude::*;
use domain::UserId;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    VerifyEmail,
    PasswordReset,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::VerifyEmail => "verify_email",
            Purpose::PasswordReset => "password_reset",
        }
    }

    pub fn lifetime(self) -> Duration {
        match self {
            Purpose::VerifyEmail => Duration::hours(48),
            Purpose::PasswordReset => Duration::hours(1),
        }
    }
}

pub fn create(conn: &mut PgConnection, user_id: UserId, purpose: Purpose) -> QueryResult<Secret> {
    let secret = Secret::generate();
    diesel::insert_into(one_time_tokens::table)
        .values((
            one_time_tokens::token_hash.eq(secret.hash()),
            one_time_tokens::user_id.eq(user_id.as_uuid()),
            one_time_tokens::purpose.eq(purpose.as_str()),
            one_time_tokens::expires_at.eq(Utc::now() + purpose.lifetime()),
        ))
        .execute(conn)?;
    Ok(secret)
}

/// Uses a token up; the user it was for, if it was valid, unused and fresh.
pub fn consume(
    conn: &mut PgConnection,
    presented: &Secret,
    purpose: Purpose,
) -> QueryResult<Option<UserId>> {
    diesel::update(
        one_time_tokens::table
            .find(presented.hash())
            .filter(one_time_tokens::purpose.eq(purpose.as_str()))
            .filter(one_time_tokens::used_at.is_null())
            .filter(one_time_tokens::expires_at.gt(diesel::dsl::now)),
    )
    .set(one_time_tokens::used_at.eq(diesel::dsl::now))
    .returning(one_time_tokens::user_id)
    .get_result::<Uuid>(conn)
    .optional()
    .map(|id| id.map(UserId))
}

/// Makes a user's earlier unused tokens of one purpose unusable.
pub fn invalidate(
    conn: &mut PgConnection,
    user_id: UserId,
    purpose: Purpose,
) -> QueryResult<usize> {
    diesel::update(
        one_time_tokens::table
            .filter(one_time_tokens::user_id.eq(user_id.as_uuid()))
            .filter(one_time_tokens::purpose.eq(purpose.as_str()))
            .filter(one_time_tokens::used_at.is_null()),
    )
    .set(one_time_tokens::used_at.eq(diesel::dsl::now))
    .execute(conn)
}
