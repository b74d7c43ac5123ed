//! States stored as text: each is an enum with `as_str` and `FromStr`, a
//! serde form that is the same text, and a diesel mapping to a `TEXT`
//! column that a `CHECK` constraint holds to the same names. Comparing a
//! state means comparing enums, never strings.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Implements diesel's `ToSql`/`FromSql` between `Text` and an enum that
/// has `as_str()` and `FromStr` (derive `AsExpression` and `FromSqlRow`
/// with `#[diesel(sql_type = diesel::sql_types::Text)]` beside it). A value
/// the enum does not know is a deserialization error, not a panic.
#[macro_export]
macro_rules! text_state {
    ($state:ty) => {
        impl ::diesel::serialize::ToSql<::diesel::sql_types::Text, ::diesel::pg::Pg> for $state {
            fn to_sql<'b>(
                &'b self,
                out: &mut ::diesel::serialize::Output<'b, '_, ::diesel::pg::Pg>,
            ) -> ::diesel::serialize::Result {
                <str as ::diesel::serialize::ToSql<::diesel::sql_types::Text, ::diesel::pg::Pg>>::to_sql(
                    self.as_str(),
                    out,
                )
            }
        }

        impl ::diesel::deserialize::FromSql<::diesel::sql_types::Text, ::diesel::pg::Pg> for $state {
            fn from_sql(value: ::diesel::pg::PgValue<'_>) -> ::diesel::deserialize::Result<Self> {
                let text = <String as ::diesel::deserialize::FromSql<
                    ::diesel::sql_types::Text,
                    ::diesel::pg::Pg,
                >>::from_sql(value)?;
                text.parse::<$state>().map_err(Into::into)
            }
        }
    };
}

/// Defines a state enum stored as text: `as_str`, `Display`, `FromStr`
/// (an unknown text is an [`UnknownValue`] naming what was expected), the
/// same text in serde and in the OpenAPI schema, and the diesel mapping of
/// [`text_state!`]. The crate using it depends on serde, diesel and
/// utoipa.
///
/// `text_enum!(RoomStatus, "room status", [Waiting => "waiting", Closed => "closed"]);`
#[macro_export]
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal, [$($variant:ident => $text:literal),+ $(,)?]) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash,
            ::serde::Serialize, ::serde::Deserialize,
            ::diesel::AsExpression, ::diesel::FromSqlRow, ::utoipa::ToSchema,
        )]
        #[diesel(sql_type = ::diesel::sql_types::Text)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(&self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::status::UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|value| value.as_str() == s)
                    .ok_or_else(|| $crate::status::UnknownValue(format!(
                        "unknown {} `{s}`; expected {}", $what,
                        $name::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
                    )))
            }
        }

        $crate::text_state!($name);
    };
}

/// A text that names none of a [`text_enum!`]'s values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UnknownValue(pub String);

/// Whether an account may sign in. Accounts decides it; auth keeps a copy.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    diesel::AsExpression,
    diesel::FromSqlRow,
    utoipa::ToSchema,
)]
#[diesel(sql_type = diesel::sql_types::Text)]
#[serde(rename_all = "lowercase")]
pub enum AccountStatus {
    Active,
    Disabled,
}

impl AccountStatus {
    pub const ALL: [AccountStatus; 2] = [AccountStatus::Active, AccountStatus::Disabled];

    pub fn as_str(&self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::Disabled => "disabled",
        }
    }
}

impl fmt::Display for AccountStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown account status `{0}`; expected active or disabled")]
pub struct UnknownStatus(pub String);

impl FromStr for AccountStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AccountStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_string()))
    }
}

text_state!(AccountStatus);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_text_and_json() {
        for status in AccountStatus::ALL {
            assert_eq!(status.as_str().parse::<AccountStatus>(), Ok(status));
            let json = serde_json::to_string(&status).unwrap_or_default();
            assert_eq!(json, format!("\"{status}\""));
        }
        assert!("deleted".parse::<AccountStatus>().is_err());
    }
}
