//! Validated input types: each is made once, at the edge, by a `parse` that says what is wrong,
//! and everything after takes only these types.

use unicode_normalization::UnicodeNormalization;

use crate::limits::{
    DIRECTORY_QUERY_CHARS_MAX, DISPLAY_NAME_CHARS_MAX, PASSWORD_CHARS_MAX, USERNAME_CHARS_MAX,
};

/// What is wrong with one field: the field's name and a sentence safe to show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// A username: ASCII lower case after folding, 1 to 32 characters of `[a-z0-9._-]`, starting
/// with a letter or digit. Usernames are folded to lower case so `Alice` and `alice` are one
/// account.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Username(String);

impl Username {
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        let folded = text.to_ascii_lowercase();
        let len = folded.chars().count();
        if len == 0 || len > USERNAME_CHARS_MAX {
            return Err(FieldError::new(
                "username",
                format!("The username must have 1 to {USERNAME_CHARS_MAX} characters."),
            ));
        }
        let first_ok = folded.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit());
        let rest_ok = folded
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
        if !first_ok || !rest_ok {
            return Err(FieldError::new(
                "username",
                "The username may use a-z, 0-9, '.', '_' and '-', and must start with a letter or digit.",
            ));
        }
        Ok(Self(folded))
    }

    /// For rows read back from the store, which were validated when written.
    pub fn from_stored(text: String) -> Self {
        Self(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A display name: 1 to 64 characters after NFC and trimming, with no control characters and no
/// bidirectional overrides (which could make a name read as someone else's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        let normalized: String = text.nfc().collect();
        let trimmed = normalized.trim();
        let len = trimmed.chars().count();
        if len == 0 || len > DISPLAY_NAME_CHARS_MAX {
            return Err(FieldError::new(
                "display_name",
                format!("The display name must have 1 to {DISPLAY_NAME_CHARS_MAX} characters."),
            ));
        }
        if trimmed.chars().any(is_forbidden_in_names) {
            return Err(FieldError::new(
                "display_name",
                "The display name must not contain control or bidirectional-override characters.",
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn from_stored(text: String) -> Self {
        Self(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Control characters, and the Unicode bidirectional embedding, override and isolate controls.
pub fn is_forbidden_in_names(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// A password as typed by someone signing in. Only the length is bounded here (so a megabyte
/// "password" never reaches the hasher); the policy applies to new passwords only.
pub fn check_password_length_for_login(password: &str) -> Result<(), FieldError> {
    if password.is_empty() || password.chars().count() > PASSWORD_CHARS_MAX {
        return Err(FieldError::new(
            "password",
            format!("The password must have 1 to {PASSWORD_CHARS_MAX} characters."),
        ));
    }
    Ok(())
}

/// A directory search query: at most 64 characters, no control characters; folded to lower case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryQuery(String);

impl DirectoryQuery {
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        let trimmed = text.trim();
        if trimmed.chars().count() > DIRECTORY_QUERY_CHARS_MAX
            || trimmed.chars().any(char::is_control)
        {
            return Err(FieldError::new(
                "q",
                format!("The search text must have at most {DIRECTORY_QUERY_CHARS_MAX} characters and no control characters."),
            ));
        }
        Ok(Self(trimmed.to_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_folded_and_bounded() {
        assert_eq!(
            Username::parse("Alice").map(|u| u.0),
            Ok("alice".to_owned())
        );
        assert!(Username::parse("a.b_c-9").is_ok());
        assert!(Username::parse("").is_err());
        assert!(Username::parse("-lead").is_err());
        assert!(Username::parse("al ice").is_err());
        assert!(Username::parse("alice'--").is_err());
        assert!(Username::parse("ålice").is_err());
        assert!(Username::parse(&"a".repeat(USERNAME_CHARS_MAX + 1)).is_err());
        assert!(Username::parse(&"a".repeat(USERNAME_CHARS_MAX)).is_ok());
    }

    #[test]
    fn display_names_refuse_controls_and_bidi_overrides() {
        assert_eq!(
            DisplayName::parse("  Zoë  ").map(|d| d.0),
            Ok("Zoë".to_owned())
        );
        assert!(DisplayName::parse("evil\u{202E}gnp.exe").is_err());
        assert!(DisplayName::parse("line\nbreak").is_err());
        assert!(DisplayName::parse("   ").is_err());
        assert!(DisplayName::parse(&"é".repeat(DISPLAY_NAME_CHARS_MAX + 1)).is_err());
    }

    #[test]
    fn login_password_length_is_bounded_but_not_policed() {
        assert!(check_password_length_for_login("x").is_ok());
        assert!(check_password_length_for_login("").is_err());
        assert!(check_password_length_for_login(&"x".repeat(PASSWORD_CHARS_MAX + 1)).is_err());
    }
}
