//! What names an instance of the fleet, parsed once wherever it enters:
//! the scheduler's API and a host agent's settings share these rules.

use serde::Serialize;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

/// Defines a text newtype whose `parse` checks it once.
macro_rules! checked_text {
    ($(#[$meta:meta])* $name:ident, $check:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
                let check: fn(&str) -> Result<(), String> = $check;
                check(raw).map_err(InvalidValue)?;
                Ok(Self(raw.to_string()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

fn name_like(raw: &str, what: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&raw.len())
        && raw
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "must be a {what} of 1 to 64 lowercase letters, digits, '-', '_' or '.'"
        ))
    }
}

checked_text!(
    /// A region name: `local`, `eu-west-1`.
    Region,
    |raw| name_like(raw, "region name")
);
checked_text!(
    /// What a client will run on the instance (an application name).
    App,
    |raw| name_like(raw, "name")
);
checked_text!(
    /// Where clients reach an instance's agent: `host:port`.
    Address,
    |raw| {
        let Some((host, port)) = raw.rsplit_once(':') else {
            return Err("must be host:port".into());
        };
        let host_ok = !host.is_empty()
            && raw.len() <= 255
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'));
        match port.parse::<u16>() {
            Ok(port) if port > 0 && host_ok => Ok(()),
            _ => Err("must be host:port with a port of 1 to 65535".into()),
        }
    }
);
checked_text!(
    /// Which provider runs an instance: `process`, `docker`, `manual`.
    Provider,
    |raw| name_like(raw, "provider name")
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_addresses_are_checked_once() {
        assert!(Region::parse("eu-west-1").is_ok());
        assert!(Region::parse("").is_err());
        assert!(Region::parse("EU").is_err());
        assert!(Region::parse(&"a".repeat(65)).is_err());
        assert!(Address::parse("127.0.0.1:9100").is_ok());
        assert!(Address::parse("host.internal:80").is_ok());
        assert!(Address::parse("127.0.0.1").is_err());
        assert!(Address::parse("127.0.0.1:0").is_err());
        assert!(Address::parse("127.0.0.1:99999").is_err());
        assert!(Address::parse("a b:80").is_err());
    }
}
