//! Secret config values: where they may come from, how they are read, and that they are never printed.
//! A secret is named in `rampart.toml` by reference — `file:/absolute/path` (mode 0600),
//! `credential:NAME` (systemd's `$CREDENTIALS_DIRECTORY`) or `env:NAME` (works, with a warning) —
//! and never written there: a literal URL that carries a password is refused with the fix.

use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rampart_core::limits::SECRET_FILE_BYTES_MAX;
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretString};

use crate::config::{bad, ConfigError};

/// Where a secret config value is read from. It holds the place, never the secret, so its Debug and
/// Display may show it (an error message names the file to fix).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretRef {
    /// `file:/absolute/path`: a file that only the server's user may read.
    File(PathBuf),
    /// `credential:NAME`: `$CREDENTIALS_DIRECTORY/NAME`, as systemd's `LoadCredential=` provides.
    Credential(String),
    /// `env:NAME`: an environment variable. Allowed, with a warning: the environment leaks to child
    /// processes, `/proc/PID/environ` and crash reports.
    Env(String),
}

/// A secret value read from config. Debug prints `SecretValue([redacted])`; there is deliberately no
/// Display, so that it cannot be formatted into a log line by accident. Zeroed when dropped.
#[derive(Clone)]
pub struct SecretValue(SecretString);

/// A resolved secret, and the warning the caller logs once logging has started (never the value).
#[derive(Debug)]
pub struct Resolved {
    pub value: SecretValue,
    pub warning: Option<String>,
}

/// Looks up an environment variable: `std::env::var_os` in the server, a closure over a map in tests.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<OsString>;

/// Which user-info a literal URL may carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserInfo {
    /// A user name may be written (`postgres://rampart@db/rampart`), a password may not.
    NameOnly,
    /// None at all: `nats://TOKEN@host` is a token, indistinguishable from a user name.
    Secret,
}

/// Reads a URL-valued key that may carry a secret. `text` is either a reference, resolved here, or a
/// literal URL, accepted only when it carries no password (nor, for `UserInfo::Secret`, any
/// user-info); the refusal says how to move the secret out of the file.
pub fn secret_url(key: &str, text: &str, user_info: UserInfo, env: EnvLookup) -> Result<Resolved, ConfigError> {
    if let Some(reference) = SecretRef::parse(key, text)? {
        return reference.resolve(key, env);
    }
    if let Some(what) = url_secret(text, user_info) {
        let name = key.replace('_', "-");
        return Err(bad(
            key,
            format!(
                "{what} must not be written in rampart.toml or on the command line; put the URL in a file \
                 (mode 0600) and write {key} = \"file:/etc/rampart/{name}\", or use systemd's LoadCredential= \
                 and {key} = \"credential:{name}\""
            ),
        ));
    }
    Ok(Resolved { value: SecretValue(SecretString::from(text)), warning: None })
}

impl SecretRef {
    /// Parses `text` as a reference. `Ok(None)`: it is not one (a literal, which the caller checks).
    /// A malformed reference is an error naming `key`; the message never repeats the text.
    pub fn parse(key: &str, text: &str) -> Result<Option<SecretRef>, ConfigError> {
        if let Some(path) = text.strip_prefix("file:") {
            let path = PathBuf::from(path);
            if !path.is_absolute() {
                return Err(bad(key, "file: needs an absolute path, such as file:/etc/rampart/secret"));
            }
            return Ok(Some(SecretRef::File(path)));
        }
        if let Some(name) = text.strip_prefix("credential:") {
            let plain = !name.is_empty()
                && name.len() <= 255
                && !name.contains("..")
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'));
            if !plain {
                return Err(bad(
                    key,
                    "credential: needs a plain file name (letters, digits, `.`, `_`, `-`, `@`; no `/` or `..`), \
                     as in LoadCredential=NAME:/path",
                ));
            }
            return Ok(Some(SecretRef::Credential(name.to_owned())));
        }
        if let Some(name) = text.strip_prefix("env:") {
            let plain = name.bytes().next().is_some_and(|b| !b.is_ascii_digit())
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !plain {
                return Err(bad(key, "env: needs a variable name of letters, digits and `_`"));
            }
            return Ok(Some(SecretRef::Env(name.to_owned())));
        }
        Ok(None)
    }

    /// Reads the secret now (at config load). Errors name `key` and the place, never the value.
    pub fn resolve(&self, key: &str, env: EnvLookup) -> Result<Resolved, ConfigError> {
        match self {
            SecretRef::File(path) => Ok(Resolved { value: read_secret_file(key, path, true)?, warning: None }),
            SecretRef::Credential(name) => {
                let dir = env("CREDENTIALS_DIRECTORY").map(PathBuf::from).ok_or_else(|| {
                    bad(
                        key,
                        format!(
                            "{self}: $CREDENTIALS_DIRECTORY is not set; add LoadCredential={name}:/path/to/file to \
                             the systemd unit, or use file:/absolute/path"
                        ),
                    )
                })?;
                if !dir.is_absolute() {
                    return Err(bad(key, format!("{self}: $CREDENTIALS_DIRECTORY is not an absolute path")));
                }
                // systemd makes the directory private to the service and may grant the service user
                // access to the files through an ACL, which shows in the group bits: no mode check here.
                Ok(Resolved { value: read_secret_file(key, &dir.join(name), false)?, warning: None })
            }
            SecretRef::Env(name) => {
                let value =
                    env(name).ok_or_else(|| bad(key, format!("{self}: the environment variable is not set")))?;
                let bytes = Zeroizing::new(value.into_encoded_bytes());
                if bytes.len() > SECRET_FILE_BYTES_MAX {
                    return Err(bad(key, format!("{self}: longer than {SECRET_FILE_BYTES_MAX} bytes")));
                }
                let value = secret_from_bytes(key, &bytes, &self.to_string())?;
                let file = key.replace('_', "-");
                let warning = format!(
                    "{key} is read from the environment variable {name}, which leaks to child processes, \
                     /proc/PID/environ and crash reports; prefer {key} = \"file:/etc/rampart/{file}\" (mode 0600) \
                     or {key} = \"credential:{file}\""
                );
                Ok(Resolved { value, warning: Some(warning) })
            }
        }
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::File(path) => write!(f, "file:{}", path.display()),
            SecretRef::Credential(name) => write!(f, "credential:{name}"),
            SecretRef::Env(name) => write!(f, "env:{name}"),
        }
    }
}

impl ExposeSecret<str> for SecretValue {
    fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue([redacted])")
    }
}

/// What a literal URL carries that must not be written in config: a password in its user-info
/// (`scheme://user:password@host`), a `password=` parameter (also percent-encoded, or as
/// `sslpassword=`), or, for `UserInfo::Secret`, any user-info. `None`: nothing secret found.
pub fn url_secret(url: &str, user_info: UserInfo) -> Option<&'static str> {
    let decoded = percent_decoded_lowercase(url);
    if decoded.windows(b"password=".len()).any(|window| window == b"password=") {
        return Some("a password");
    }
    let (_, rest) = url.split_once("://")?;
    let authority_and_path = rest.split(['?', '#']).next().unwrap_or(rest);
    // The last `@` before the query: an unencoded `/` or `@` in a password must not hide it.
    let (info, _) = authority_and_path.rsplit_once('@')?;
    if info.contains(':') {
        return Some("a password");
    }
    if user_info == UserInfo::Secret && !info.is_empty() {
        return Some("a token or password");
    }
    None
}

/// Permission bits for group and others.
const GROUP_OTHER_BITS: u32 = 0o077;

/// Reads a secret file: a regular file, at most `SECRET_FILE_BYTES_MAX`, and (when `check_mode`)
/// not accessible to group or others. The mode is checked on the opened file, not on the path.
fn read_secret_file(key: &str, path: &Path, check_mode: bool) -> Result<SecretValue, ConfigError> {
    let shown = path.display();
    let cannot = |error: std::io::Error| bad(key, format!("cannot read {shown}: {}", error.kind()));
    // Stat first so that a FIFO or device is refused before `open` could block on it.
    if !std::fs::metadata(path).map_err(cannot)?.is_file() {
        return Err(bad(key, format!("{shown} is not a regular file")));
    }
    let file = File::open(path).map_err(cannot)?;
    let meta = file.metadata().map_err(cannot)?;
    if !meta.is_file() {
        return Err(bad(key, format!("{shown} is not a regular file")));
    }
    let mode = meta.permissions().mode();
    if check_mode && mode & GROUP_OTHER_BITS != 0 {
        return Err(bad(
            key,
            format!("{shown} is accessible to group or others (mode {:o}); run `chmod 600 {shown}`", mode & 0o777),
        ));
    }
    // Room for one byte past the limit, allocated once, so the buffer never moves (and leaves an
    // unzeroed copy behind) while it fills.
    let mut bytes = Zeroizing::new(Vec::with_capacity(SECRET_FILE_BYTES_MAX + 1));
    file.take(SECRET_FILE_BYTES_MAX as u64 + 1).read_to_end(&mut bytes).map_err(cannot)?;
    if bytes.len() > SECRET_FILE_BYTES_MAX {
        return Err(bad(key, format!("{shown} is larger than {SECRET_FILE_BYTES_MAX} bytes")));
    }
    secret_from_bytes(key, &bytes, &shown.to_string())
}

/// The secret in `bytes`: UTF-8, trailing newlines trimmed, not empty. `source` names the place.
fn secret_from_bytes(key: &str, bytes: &[u8], source: &str) -> Result<SecretValue, ConfigError> {
    let text = std::str::from_utf8(bytes).map_err(|_| bad(key, format!("{source} is not UTF-8 text")))?;
    let text = text.trim_end_matches(['\r', '\n']);
    if text.is_empty() {
        return Err(bad(key, format!("{source} is empty")));
    }
    Ok(SecretValue(SecretString::from(text)))
}

/// `text` with `%XX` escapes decoded and ASCII letters lowered, in a buffer zeroed when dropped (it
/// may hold the very password it is searched for).
fn percent_decoded_lowercase(text: &str) -> Zeroizing<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Zeroizing::new(Vec::with_capacity(bytes.len()));
    let mut index = 0;
    while index < bytes.len() {
        let escaped = bytes
            .get(index + 1..index + 3)
            .filter(|hex| hex.iter().all(u8::is_ascii_hexdigit))
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match (bytes[index], escaped) {
            (b'%', Some(byte)) => {
                out.push(byte.to_ascii_lowercase());
                index += 3;
            }
            (byte, _) => {
                out.push(byte.to_ascii_lowercase());
                index += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::fs;

    use super::*;

    const SECRET: &str = "hunter2-correct-horse";

    fn no_env(_: &str) -> Option<OsString> {
        None
    }

    fn write_file(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, text).expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }

    fn resolve(text: &str, env: EnvLookup) -> Result<Resolved, ConfigError> {
        SecretRef::parse("database_url", text)?.expect("a reference").resolve("database_url", env)
    }

    #[test]
    fn a_private_file_is_read_and_its_trailing_newline_trimmed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write_file(dir.path(), "secret", &format!("{SECRET}\n"), 0o600);
        let resolved = resolve(&format!("file:{}", path.display()), &no_env).expect("readable");
        assert_eq!(resolved.value.expose_secret(), SECRET);
        assert!(resolved.warning.is_none());
    }

    #[test]
    fn a_group_readable_file_is_refused_with_the_chmod_to_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write_file(dir.path(), "secret", SECRET, 0o640);
        let error = resolve(&format!("file:{}", path.display()), &no_env).expect_err("group-readable");
        assert_eq!(error.key, "database_url");
        assert!(error.reason.contains(&format!("chmod 600 {}", path.display())), "{error}");
        assert!(!error.to_string().contains(SECRET));
    }

    #[test]
    fn a_missing_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("absent");
        let error = resolve(&format!("file:{}", path.display()), &no_env).expect_err("missing");
        assert_eq!(error.key, "database_url");
        assert!(error.reason.contains("cannot read"), "{error}");
    }

    #[test]
    fn a_relative_path_an_empty_file_and_an_oversized_file_are_refused() {
        assert!(SecretRef::parse("k", "file:etc/secret").is_err());
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = write_file(dir.path(), "empty", "\n", 0o600);
        assert!(resolve(&format!("file:{}", empty.display()), &no_env).is_err());
        let big = write_file(dir.path(), "big", &"x".repeat(SECRET_FILE_BYTES_MAX + 1), 0o600);
        let error = resolve(&format!("file:{}", big.display()), &no_env).expect_err("too large");
        assert!(error.reason.contains("larger than"), "{error}");
        assert!(resolve(&format!("file:{}", dir.path().display()), &no_env).is_err(), "a directory");
    }

    #[test]
    fn a_credential_is_read_from_the_credentials_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        // systemd may grant access through an ACL, which shows in the group bits.
        write_file(dir.path(), "database-url", &format!("{SECRET}\n"), 0o440);
        let dir_path = dir.path().as_os_str().to_owned();
        let env = move |name: &str| (name == "CREDENTIALS_DIRECTORY").then(|| dir_path.clone());
        let resolved = resolve("credential:database-url", &env).expect("readable");
        assert_eq!(resolved.value.expose_secret(), SECRET);
        let error = resolve("credential:absent", &env).expect_err("missing credential");
        assert!(error.reason.contains("cannot read"), "{error}");
    }

    #[test]
    fn a_credential_needs_a_plain_name_and_the_directory_variable() {
        for name in ["", "..", "../etc/shadow", "a/b", "/etc/shadow", "a..b", "a b"] {
            let error = SecretRef::parse("database_url", &format!("credential:{name}")).expect_err(name);
            assert_eq!(error.key, "database_url");
        }
        let error = resolve("credential:database-url", &no_env).expect_err("no $CREDENTIALS_DIRECTORY");
        assert!(error.reason.contains("CREDENTIALS_DIRECTORY"), "{error}");
        let relative = |_: &str| Some(OsString::from("relative/dir"));
        assert!(resolve("credential:database-url", &relative).is_err());
    }

    #[test]
    fn an_env_reference_works_and_warns_without_the_value() {
        let vars = HashMap::from([("RAMPART_DATABASE_URL", OsString::from(SECRET))]);
        let env = |name: &str| vars.get(name).cloned();
        let resolved = resolve("env:RAMPART_DATABASE_URL", &env).expect("set");
        assert_eq!(resolved.value.expose_secret(), SECRET);
        let warning = resolved.warning.expect("a warning");
        assert!(warning.contains("RAMPART_DATABASE_URL") && warning.contains("file:"), "{warning}");
        assert!(!warning.contains(SECRET));
        assert!(resolve("env:UNSET_VARIABLE", &env).is_err());
        assert!(SecretRef::parse("k", "env:").is_err());
        assert!(SecretRef::parse("k", "env:A-B").is_err());
    }

    #[test]
    fn debug_and_display_never_show_the_secret() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write_file(dir.path(), "secret", SECRET, 0o600);
        let reference = SecretRef::parse("k", &format!("file:{}", path.display())).expect("parse").expect("ref");
        let resolved = reference.resolve("k", &no_env).expect("readable");
        assert_eq!(format!("{:?}", resolved.value), "SecretValue([redacted])");
        for shown in [format!("{resolved:?}"), format!("{reference:?}"), reference.to_string()] {
            assert!(!shown.contains(SECRET), "{shown}");
        }
        let literal = secret_url("k", "sqlite:/var/lib/x.db", UserInfo::NameOnly, &no_env).expect("no password");
        assert!(!format!("{literal:?}").contains("sqlite"));
        let error = secret_url("k", &format!("postgres://u:{SECRET}@db/x"), UserInfo::NameOnly, &no_env)
            .expect_err("literal password");
        assert!(!error.to_string().contains(SECRET) && !format!("{error:?}").contains(SECRET));
    }

    #[test]
    fn a_literal_url_with_a_password_is_refused_with_the_fix() {
        for url in [
            "postgres://rampart:pw@db/rampart",
            "postgres://rampart:p/w@db/rampart",
            "postgres://db/rampart?password=pw",
            "postgres://db/rampart?sslmode=require&sslpassword=pw",
            "postgres://db/rampart?%70assword=pw",
            "postgres://db/rampart?PASSWORD=pw",
            "host=db password=pw",
        ] {
            let error = secret_url("database_url", url, UserInfo::NameOnly, &no_env).expect_err(url);
            assert_eq!(error.key, "database_url");
            assert!(error.reason.contains("database_url = \"file:/etc/rampart/database-url\""), "{error}");
            assert!(error.reason.contains("credential:database-url"), "{error}");
        }
        for url in ["postgres://rampart@db/rampart", "postgres://db/rampart?sslmode=require", "sqlite:/x.db"] {
            assert!(secret_url("database_url", url, UserInfo::NameOnly, &no_env).is_ok(), "{url}");
        }
        assert!(secret_url("nats_url", "nats://s3cr3t@nats:4222", UserInfo::Secret, &no_env).is_err());
        assert!(secret_url("nats_url", "nats://nats:4222", UserInfo::Secret, &no_env).is_ok());
    }
}
