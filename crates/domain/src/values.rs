//! Values checked once at the boundary; holding one proves it is valid.

use serde::{Serialize, Serializer};
use std::fmt;
use validator::ValidateEmail;

/// Why a value was refused, phrased for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValueError(pub String);

/// An email address, trimmed and lower-cased so one mailbox is one account.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub const MAX_LEN: usize = 254;

    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let email = raw.trim().to_lowercase();
        if email.is_empty() {
            return Err(ValueError("must not be empty".into()));
        }
        if email.len() > Self::MAX_LEN {
            return Err(ValueError(format!(
                "must be at most {} characters",
                Self::MAX_LEN
            )));
        }
        if !email.validate_email() {
            return Err(ValueError("is not a valid email address".into()));
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Email {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Email {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// A name shown to other people: 1 to 64 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub const MAX_CHARS: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(ValueError("must not be empty".into()));
        }
        check_plain_text(name, Self::MAX_CHARS)?;
        Ok(Self(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DisplayName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for DisplayName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// Text people type to be read or matched: at most `max_chars` characters,
/// no control characters (PostgreSQL text cannot even hold NUL), and no
/// invisible or direction-changing characters, with which a name can be
/// made to read as something else to staff and visitors.
pub fn check_plain_text(text: &str, max_chars: usize) -> Result<(), ValueError> {
    if text.chars().count() > max_chars {
        return Err(ValueError(format!(
            "must be at most {max_chars} characters"
        )));
    }
    if text.chars().any(char::is_control) {
        return Err(ValueError("must not contain control characters".into()));
    }
    if let Some(c) = text.chars().find(|c| is_invisible_or_bidi(*c)) {
        return Err(ValueError(format!(
            "must not contain invisible or text-direction characters (U+{:04X})",
            u32::from(c)
        )));
    }
    Ok(())
}

/// Zero-width characters and marks (U+200B..U+200F), bidirectional
/// embeddings and overrides (U+202A..U+202E) and isolates (U+2066..U+2069),
/// the word joiner (U+2060), the Arabic letter mark (U+061C) and the zero
/// width no-break space (U+FEFF).
fn is_invisible_or_bidi(c: char) -> bool {
    matches!(
        c,
        '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2066}'..='\u{2069}'
            | '\u{2060}'
            | '\u{061C}'
            | '\u{FEFF}'
    )
}

/// A new password: 8 to 128 characters. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub const MIN_CHARS: usize = 8;
    pub const MAX_CHARS: usize = 128;

    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let chars = raw.chars().count();
        if chars < Self::MIN_CHARS {
            return Err(ValueError(format!(
                "must be at least {} characters",
                Self::MIN_CHARS
            )));
        }
        if chars > Self::MAX_CHARS {
            return Err(ValueError(format!(
                "must be at most {} characters",
                Self::MAX_CHARS
            )));
        }
        Ok(Self(raw.to_string()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_is_normalised_and_checked() {
        assert_eq!(
            Email::parse("  Ada@Example.COM ").unwrap().as_str(),
            "ada@example.com"
        );
        for bad in ["", "ada", "ada@", "@example.com", "a b@example.com"] {
            assert!(Email::parse(bad).is_err(), "{bad} accepted");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(Email::parse(&long).is_err());
    }

    #[test]
    fn display_name_bounds() {
        assert_eq!(DisplayName::parse(" Ada ").unwrap().as_str(), "Ada");
        assert!(DisplayName::parse("   ").is_err());
        assert!(DisplayName::parse(&"é".repeat(64)).is_ok());
        assert!(DisplayName::parse(&"é".repeat(65)).is_err());
        assert!(DisplayName::parse("a\u{0}b").is_err());
    }

    #[test]
    fn display_names_refuse_spoofing_characters() {
        for spoof in [
            "admin\u{202E}nimda",
            "\u{202A}Ada",
            "Ada\u{2066}x\u{2069}",
            "A\u{200B}da",
            "Ad\u{200F}a",
            "Ada\u{FEFF}",
        ] {
            let refused = DisplayName::parse(spoof);
            assert!(refused.is_err(), "{spoof:?} was accepted");
        }
        // Letters of every script stay welcome.
        for name in ["Zoë", "مریم", "李小龍", "Łukasz"] {
            assert!(DisplayName::parse(name).is_ok(), "{name:?} was refused");
        }
    }

    #[test]
    fn password_bounds_and_redaction() {
        assert!(Password::parse("short").is_err());
        assert!(Password::parse(&"x".repeat(8)).is_ok());
        assert!(Password::parse(&"x".repeat(129)).is_err());
        let password = Password::parse("correct horse").unwrap();
        assert!(!format!("{password:?}").contains("horse"));
    }
}
