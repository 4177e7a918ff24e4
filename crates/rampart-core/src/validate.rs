//! Validated input types: each is made once, at the edge, by a `parse` that says what is wrong,
//! and everything after takes only these types.

use unicode_normalization::UnicodeNormalization;

use crate::limits::{
    CHANNEL_NAME_CHARS_MAX, CLIENT_ID_CHARS_MAX, DIRECTORY_QUERY_CHARS_MAX, DISPLAY_NAME_CHARS_MAX, MESSAGE_CHARS_MAX,
    PASSWORD_CHARS_MAX, TOPIC_CHARS_MAX, USERNAME_CHARS_MAX,
};

/// What is wrong with one field: the field's name and a sentence safe to show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self { field, message: message.into() }
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
        let rest_ok =
            folded.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
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
        if trimmed.chars().count() > DIRECTORY_QUERY_CHARS_MAX || trimmed.chars().any(char::is_control) {
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

/// A channel name: 1 to 80 characters of `[a-z0-9][a-z0-9-_]*` (API.md).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ChannelName(String);

impl ChannelName {
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        let len = text.chars().count();
        let first_ok = text.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit());
        let rest_ok = text.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if len == 0 || len > CHANNEL_NAME_CHARS_MAX || !first_ok || !rest_ok {
            return Err(FieldError::new(
                "name",
                format!("The channel name must have 1 to {CHANNEL_NAME_CHARS_MAX} characters of a-z, 0-9, '-' and '_', starting with a letter or digit."),
            ));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn from_stored(text: String) -> Self {
        Self(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A channel topic: 0 to 250 characters after NFC and trimming, no control or bidi-override
/// characters.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Topic(String);

impl Topic {
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        let normalized: String = text.nfc().collect();
        let trimmed = normalized.trim();
        if trimmed.chars().count() > TOPIC_CHARS_MAX || trimmed.chars().any(is_forbidden_in_names) {
            return Err(FieldError::new(
                "topic",
                format!("The topic must have at most {TOPIC_CHARS_MAX} characters and no control characters."),
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

/// A message body: NFC, 1 to 16,000 Unicode scalar values, no NUL or other C0 control characters
/// except newline and tab (API.md). Not trimmed: what the sender typed is what is stored.
#[derive(Clone, PartialEq, Eq)]
pub struct MessageBody(String);

impl MessageBody {
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        let normalized: String = text.nfc().collect();
        let len = normalized.chars().count();
        if len == 0 || len > MESSAGE_CHARS_MAX {
            return Err(FieldError::new("body", format!("A message must have 1 to {MESSAGE_CHARS_MAX} characters.")));
        }
        if normalized.chars().any(|c| (c < ' ' && c != '\n' && c != '\t') || c == '\u{7f}') {
            return Err(FieldError::new(
                "body",
                "A message must not contain control characters other than newline and tab.",
            ));
        }
        if normalized.trim().is_empty() {
            return Err(FieldError::new("body", "A message must not be blank."));
        }
        Ok(Self(normalized))
    }

    pub fn from_stored(text: String) -> Self {
        Self(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for MessageBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Message text stays out of logs and panics.
        write!(f, "MessageBody({} chars)", self.0.chars().count())
    }
}

/// A client's idempotency key: 1 to 64 printable ASCII characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientId(String);

impl ClientId {
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        let ok = !text.is_empty() && text.len() <= CLIENT_ID_CHARS_MAX && text.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            return Err(FieldError::new(
                "client_id",
                format!("client_id must have 1 to {CLIENT_ID_CHARS_MAX} printable ASCII characters."),
            ));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn from_stored(text: String) -> Self {
        Self(text)
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
        assert_eq!(Username::parse("Alice").map(|u| u.0), Ok("alice".to_owned()));
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
        assert_eq!(DisplayName::parse("  Zoë  ").map(|d| d.0), Ok("Zoë".to_owned()));
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

    #[test]
    fn channel_names_follow_the_api_pattern() {
        assert!(ChannelName::parse("general").is_ok());
        assert!(ChannelName::parse("team-a_2").is_ok());
        assert!(ChannelName::parse("-lead").is_err());
        assert!(ChannelName::parse("General").is_err());
        assert!(ChannelName::parse("").is_err());
        assert!(ChannelName::parse(&"a".repeat(CHANNEL_NAME_CHARS_MAX)).is_ok());
        assert!(ChannelName::parse(&"a".repeat(CHANNEL_NAME_CHARS_MAX + 1)).is_err());
        assert!(ChannelName::parse("<script>").is_err());
    }

    #[test]
    fn message_bodies_are_nfc_bounded_and_free_of_controls() {
        // "e" + combining acute becomes one precomposed character.
        let body = MessageBody::parse("caf\u{65}\u{301}").expect("valid");
        assert_eq!(body.as_str(), "caf\u{e9}");
        assert!(MessageBody::parse("line one\nline\ttwo").is_ok());
        assert!(MessageBody::parse("nul\u{0}byte").is_err());
        assert!(MessageBody::parse("bell\u{7}").is_err());
        assert!(MessageBody::parse("").is_err());
        assert!(MessageBody::parse(" \n ").is_err());
        assert!(MessageBody::parse(&"x".repeat(MESSAGE_CHARS_MAX)).is_ok());
        assert!(MessageBody::parse(&"x".repeat(MESSAGE_CHARS_MAX + 1)).is_err());
        // Limits count scalar values, not bytes.
        assert!(MessageBody::parse(&"é".repeat(MESSAGE_CHARS_MAX)).is_ok());
        assert!(!format!("{body:?}").contains("caf"));
    }

    #[test]
    fn topics_and_client_ids_are_bounded() {
        assert!(Topic::parse("").is_ok());
        assert!(Topic::parse(&"t".repeat(TOPIC_CHARS_MAX + 1)).is_err());
        assert!(Topic::parse("evil\u{202e}").is_err());
        assert!(ClientId::parse("abc-123").is_ok());
        assert!(ClientId::parse("").is_err());
        assert!(ClientId::parse("has space").is_err());
        assert!(ClientId::parse(&"c".repeat(CLIENT_ID_CHARS_MAX + 1)).is_err());
    }
}
