//! The password policy (API.md, after NIST SP 800-63B): 12 to 256 characters, not a common
//! password, not containing the username; no composition rules. Passwords are checked exactly as
//! typed: never trimmed, case-folded or truncated before hashing (the lower-casing below is only
//! for comparison against the list).

use std::collections::HashSet;
use std::sync::OnceLock;

use crate::limits::{PASSWORD_CHARS_MAX, PASSWORD_CHARS_MIN};

/// Why a password was refused. The message is safe to show: it never repeats the password.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasswordProblem {
    TooShort,
    TooLong,
    Common,
    ContainsUsername,
    Repetitive,
}

impl PasswordProblem {
    pub fn message(self) -> String {
        match self {
            PasswordProblem::TooShort => {
                format!("The password must have at least {PASSWORD_CHARS_MIN} characters.")
            }
            PasswordProblem::TooLong => {
                format!("The password must have at most {PASSWORD_CHARS_MAX} characters.")
            }
            PasswordProblem::Common => {
                "The password is too common; choose a longer phrase of unrelated words.".to_owned()
            }
            PasswordProblem::ContainsUsername => "The password must not contain the username.".to_owned(),
            PasswordProblem::Repetitive => "The password is a repeated or sequential run of characters.".to_owned(),
        }
    }
}

const COMMON_PASSWORDS: &str = include_str!("../data/common-passwords.txt");
/// A stripped core shorter than this is not looked up: "ab" + digits is already caught by length.
const COMMON_CORE_CHARS_MIN: usize = 4;
/// The username is looked for inside the password from this length on.
const USERNAME_IN_PASSWORD_CHARS_MIN: usize = 3;

fn common_passwords() -> &'static HashSet<&'static str> {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| COMMON_PASSWORDS.lines().filter(|l| !l.is_empty()).collect())
}

/// How many passwords the bundled list holds (the README states it).
pub fn common_password_count() -> usize {
    common_passwords().len()
}

/// Checks a new password for `username` (already normalized). Returns the first problem found.
pub fn check(password: &str, username: &str) -> Result<(), PasswordProblem> {
    let chars = password.chars().count();
    if chars < PASSWORD_CHARS_MIN {
        return Err(PasswordProblem::TooShort);
    }
    if chars > PASSWORD_CHARS_MAX {
        return Err(PasswordProblem::TooLong);
    }
    let folded = password.to_lowercase();
    if username.chars().count() >= USERNAME_IN_PASSWORD_CHARS_MIN && folded.contains(&username.to_lowercase()) {
        return Err(PasswordProblem::ContainsUsername);
    }
    if is_repetitive(&folded) {
        return Err(PasswordProblem::Repetitive);
    }
    if is_common(&folded) {
        return Err(PasswordProblem::Common);
    }
    Ok(())
}

/// A common password as it stands, or with digits and symbols stuck on either end
/// ("Password1234!").
fn is_common(folded: &str) -> bool {
    let list = common_passwords();
    if list.contains(folded) {
        return true;
    }
    let core = folded.trim_matches(|c: char| !c.is_alphabetic());
    core.chars().count() >= COMMON_CORE_CHARS_MIN && list.contains(core)
}

/// One character repeated, a short pattern repeated ("abcabcabcabc"), or a run where each
/// character is the previous one plus or minus one ("abcdefghijkl", "987654321098").
fn is_repetitive(folded: &str) -> bool {
    let chars: Vec<char> = folded.chars().collect();
    let repeats_pattern = (1..=chars.len() / 3).any(|period| {
        chars.len().is_multiple_of(period) && chars.chunks(period).all(|chunk| chunk == &chars[..period])
    });
    let steps: Vec<i64> =
        chars.windows(2).map(|pair| i64::from(u32::from(pair[1])) - i64::from(u32::from(pair[0]))).collect();
    let sequential = steps.iter().all(|&s| s == 1 || s == -9) || steps.iter().all(|&s| s == -1 || s == 9);
    repeats_pattern || sequential
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_list_has_at_least_ten_thousand_entries() {
        assert!(common_password_count() >= 10_000);
    }

    #[test]
    fn length_bounds_count_unicode_scalar_values() {
        assert_eq!(check("short", "alice"), Err(PasswordProblem::TooShort));
        // Twelve characters of four bytes each pass, though a byte count would say 48.
        assert_eq!(check("🦀🐙🦉🦊🐝🦄🐢🦎🐬🦋🐌🦜", "alice"), Ok(()));
        assert_eq!(check(&"x y".repeat(100), "alice"), Err(PasswordProblem::TooLong));
    }

    #[test]
    fn common_passwords_are_refused_with_or_without_decoration() {
        assert_eq!(check("password1234", "alice"), Err(PasswordProblem::Common));
        assert_eq!(check("Password1234!", "alice"), Err(PasswordProblem::Common));
        assert_eq!(check("qwertyuiop123", "alice"), Err(PasswordProblem::Common));
        assert_eq!(check("1qaz2wsx3edc", "alice"), Err(PasswordProblem::Common));
    }

    #[test]
    fn username_inside_password_is_refused() {
        assert_eq!(check("my-name-is-Alice-ok", "alice"), Err(PasswordProblem::ContainsUsername));
    }

    #[test]
    fn repetitive_and_sequential_runs_are_refused() {
        assert_eq!(check("aaaaaaaaaaaa", "bob"), Err(PasswordProblem::Repetitive));
        assert_eq!(check("abcabcabcabc", "bob"), Err(PasswordProblem::Repetitive));
        assert_eq!(check("abcdefghijklm", "bob"), Err(PasswordProblem::Repetitive));
        assert_eq!(check("123456789012", "bob"), Err(PasswordProblem::Repetitive));
    }

    #[test]
    fn ordinary_passphrases_pass_exactly_as_typed() {
        assert_eq!(check("correct horse battery staple", "alice"), Ok(()));
        assert_eq!(check("  leading and trailing spaces  ", "alice"), Ok(()));
        assert_eq!(check("Tr0ub4dor&3-extended", "alice"), Ok(()));
    }
}
