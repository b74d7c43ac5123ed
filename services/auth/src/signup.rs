//! Creating a user, the one way every path does it (`POST /register`,
//! `POST /visitors`, `auth create-admin`): the row and its
//! `user.registered` event, in the caller's transaction, so the directory
//! in accounts learns of every user exactly as auth stored them.

use crate::store::users::{self, NewUser, UserRow};
use diesel::prelude::*;
use domain::messages::{UserKind, UserRegistered};

pub fn create_user(conn: &mut PgConnection, new: NewUser, kind: UserKind) -> QueryResult<UserRow> {
    let user = users::insert(conn, new)?;
    bus::outbox::enqueue(
        conn,
        UserRegistered {
            user_id: user.id,
            email: user.email.clone(),
            display_name: user.display_name.clone(),
            roles: user.roles(),
            kind,
        },
    )?;
    Ok(user)
}
