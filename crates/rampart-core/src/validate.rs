//! Validated input types: each is made once, at the edge, by a `parse` that says what is wrong,
//! and everything after takes only these types.

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeEmoji, UnicodeGeneralCategory};

use crate::error::ErrorCode;

use crate::limits::{
    CHANNEL_NAME_CHARS_MAX, CLIENT_ID_CHARS_MAX, DIRECTORY_QUERY_CHARS_MAX, DISPLAY_NAME_CHARS_MAX, MESSAGE_CHARS_MAX,
    PASSWORD_CHARS_MAX, TOPIC_CHARS_MAX, USERNAME_CHARS_MAX,
};

/// What is wrong with one field: the field's name, the code the client gets (`invalid_input`
/// unless a more precise one helps) and a sentence safe to show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub code: ErrorCode,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self { field, code: ErrorCode::InvalidInput, message: message.into() }
    }

    /// A name holding a character that cannot be seen or that changes how text around it shows.
    fn invisible(field: &'static str, what: &str, c: char) -> Self {
        let message = format!(
            "The {what} must not contain invisible, format, control or direction characters (it holds U+{:04X}).",
            u32::from(c)
        );
        Self { field, code: ErrorCode::InvisibleCharacter, message }
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
        if let Some(c) = hidden_character(&folded) {
            return Err(FieldError::invisible("username", "username", c));
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

    /// What the name looks like, for refusing look-alikes: its UTS #39 skeleton (`m` and `rn`,
    /// `1` and `l`, `0` and `O` share one), lower-cased, with `i` folded into `l` as well, so
    /// `adm1n` and `admin` share one too (UTS #39 keeps `i` apart for its dot, which a reader of a
    /// short name in a small font does not notice). Two usernames with one skeleton cannot both
    /// exist; the store keeps the skeleton in a unique column.
    pub fn skeleton(&self) -> String {
        unicode_security::skeleton(&self.0)
            .flat_map(char::to_lowercase)
            .map(|c| if c == 'i' { 'l' } else { c })
            .collect()
    }
}

/// A display name: 1 to 64 characters after NFC and trimming, with no character that cannot be
/// seen or that changes how the text around it shows (`hidden_character`), which could make a
/// name read as someone else's.
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
        if let Some(c) = hidden_character(trimmed) {
            return Err(FieldError::invisible("display_name", "display name", c));
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

/// The first character of a name that cannot be seen or that changes how the text around it
/// shows, if there is one: controls (general category Cc), format characters (Cf: zero-width
/// space U+200B, word joiner U+2060, byte order mark U+FEFF, the bidirectional controls U+202A–
/// U+202E and U+2066–U+2069, tag characters), line and paragraph separators (Zl, Zp), and every
/// default-ignorable code point (Hangul fillers, variation selectors …). A zero-width joiner
/// between two emoji and a variation selector after one are part of the emoji (`🏳️‍🌈`), not
/// hidden, and are allowed there only.
pub fn hidden_character(text: &str) -> Option<char> {
    let chars: Vec<char> = text.chars().collect();
    chars.iter().enumerate().find_map(|(i, &c)| {
        let before = i.checked_sub(1).and_then(|j| chars.get(j)).copied();
        let after = chars.get(i + 1).copied();
        (is_hidden(c) && !is_part_of_emoji(c, before, after)).then_some(c)
    })
}

fn is_hidden(c: char) -> bool {
    matches!(
        c.general_category(),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
    ) || is_default_ignorable(c)
        || is_bidi_control(c)
}

/// Default_Ignorable_Code_Point (UAX #44): exactly what UTS #39 drops from a skeleton, so a
/// character whose skeleton is empty is one.
fn is_default_ignorable(c: char) -> bool {
    let mut buffer = [0; 4];
    let ignorable = unicode_security::skeleton(c.encode_utf8(&mut buffer)).next().is_none();
    ignorable
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// An emoji in the sense that matters here: not one of the ASCII characters (digits, `#`, `*`)
/// that Unicode also counts as emoji bases.
fn is_emoji(c: char) -> bool {
    !c.is_ascii() && c.is_emoji_char()
}

/// A zero-width joiner between two emoji (the previous one perhaps with its variation selector or
/// skin tone), or a variation selector right after an emoji.
fn is_part_of_emoji(c: char, before: Option<char>, after: Option<char>) -> bool {
    const ZERO_WIDTH_JOINER: char = '\u{200D}';
    const TEXT_PRESENTATION: char = '\u{FE0E}';
    const EMOJI_PRESENTATION: char = '\u{FE0F}';
    match c {
        ZERO_WIDTH_JOINER => {
            before.is_some_and(|b| b == EMOJI_PRESENTATION || is_emoji(b)) && after.is_some_and(is_emoji)
        }
        TEXT_PRESENTATION | EMOJI_PRESENTATION => before.is_some_and(is_emoji),
        _ => false,
    }
}

/// Control characters, and the Unicode bidirectional embedding, override and isolate controls
/// (the rule for topics; names follow the stricter `hidden_character`).
pub fn is_forbidden_in_names(c: char) -> bool {
    c.is_control() || is_bidi_control(c)
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

    fn invisible(result: Result<impl std::fmt::Debug, FieldError>) -> bool {
        matches!(result, Err(FieldError { code: ErrorCode::InvisibleCharacter, .. }))
    }

    #[test]
    fn usernames_refuse_invisible_characters_with_their_own_code() {
        for name in
            ["admin\u{200B}", "admin\u{2060}", "\u{FEFF}admin", "adm\u{AD}in", "admin\u{202E}", "ad\u{2066}min\u{2069}"]
        {
            assert!(invisible(Username::parse(name)), "{name:?}");
        }
        // A look-alike letter from another script is outside the character set: invalid_input.
        let cyrillic = Username::parse("\u{430}dmin");
        assert!(matches!(cyrillic, Err(FieldError { code: ErrorCode::InvalidInput, .. })), "{cyrillic:?}");
    }

    #[test]
    fn display_names_refuse_controls() {
        for name in ["a\u{7}b", "a\u{85}b", "a\u{9F}b", "tab\there"] {
            assert!(invisible(DisplayName::parse(name)), "{name:?}");
        }
    }

    #[test]
    fn display_names_refuse_format_characters() {
        // Zero-width space, word joiner, byte order mark, soft hyphen, a tag character, an
        // invisible operator, the Mongolian vowel separator.
        for c in ['\u{200B}', '\u{2060}', '\u{FEFF}', '\u{AD}', '\u{E0041}', '\u{2062}', '\u{180E}'] {
            assert!(invisible(DisplayName::parse(&format!("Ad{c}min"))), "U+{:04X}", u32::from(c));
        }
    }

    #[test]
    fn display_names_refuse_bidirectional_controls() {
        for c in [
            '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}',
            '\u{200E}', '\u{200F}', '\u{61C}',
        ] {
            assert!(invisible(DisplayName::parse(&format!("evil{c}gnp.exe"))), "U+{:04X}", u32::from(c));
        }
    }

    #[test]
    fn display_names_refuse_default_ignorables_and_separators() {
        // Hangul fillers (letters that show nothing), the combining grapheme joiner, variation
        // selectors after a letter, a Mongolian free variation selector, line and paragraph separators.
        for c in [
            '\u{3164}',
            '\u{115F}',
            '\u{FFA0}',
            '\u{34F}',
            '\u{FE00}',
            '\u{FE0F}',
            '\u{180B}',
            '\u{E0100}',
            '\u{2028}',
            '\u{2029}',
        ] {
            assert!(invisible(DisplayName::parse(&format!("Ad{c}min"))), "U+{:04X}", u32::from(c));
        }
        assert!(invisible(DisplayName::parse("\u{3164}")), "a name of one Hangul filler");
    }

    #[test]
    fn display_names_keep_emoji_sequences_and_every_script() {
        for name in
            ["Zoë", "李小龍", "محمد", "Ана", "Sam 🏳\u{FE0F}\u{200D}🌈", "👩🏽\u{200D}💻 Ana", "❤\u{FE0F}", "Ana ❤"]
        {
            assert!(DisplayName::parse(name).is_ok(), "{name:?}");
        }
        // A joiner or selector that joins no emoji hides something.
        for name in ["a\u{200D}b", "😀\u{200D}", "\u{200D}😀", "1\u{FE0F}", "a\u{FE0F}", "Ana\u{200D}😀"] {
            assert!(invisible(DisplayName::parse(name)), "{name:?}");
        }
    }

    #[test]
    fn look_alike_usernames_share_a_skeleton() {
        let skeleton = |name: &str| Username::parse(name).expect("valid").skeleton();
        for alike in ["adm1n", "adrnin", "admln", "ADMIN", "adrn1n"] {
            assert_eq!(skeleton(alike), skeleton("admin"), "{alike}");
        }
        assert_eq!(skeleton("b0b"), skeleton("bob"));
        assert_eq!(skeleton("al1ce"), skeleton("alice"));
        for other in ["alice", "bob", "admins", "adam", "root", "a.dmin", "ad-min"] {
            assert_ne!(skeleton(other), skeleton("admin"), "{other}");
        }
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
