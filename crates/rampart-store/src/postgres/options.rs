//! How to reach PostgreSQL: a URL (which may carry a password, so this type's Debug prints only
//! the host, port, database, user and TLS mode), the TLS mode and CA file (`verify-full` checks
//! the server's certificate against the CA and its name against the host), and the one schema the
//! store's objects live in, put alone on the search_path.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgSslMode};

use crate::{StoreError, StoreResult};

/// The schema when none is named: the one `rampart db provision` creates by default.
pub const SCHEMA_DEFAULT: &str = "rampart";
/// PostgreSQL's identifier limit (NAMEDATALEN - 1).
const SCHEMA_CHARS_MAX: usize = 63;
/// Shown in `pg_stat_activity`, so an operator can tell Rampart's sessions apart.
const APPLICATION_NAME: &str = "rampart";

/// TLS to the server, as libpq's `sslmode` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PgTls {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl PgTls {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "disable" => Some(Self::Disable),
            "prefer" => Some(Self::Prefer),
            "require" => Some(Self::Require),
            "verify-ca" => Some(Self::VerifyCa),
            "verify-full" => Some(Self::VerifyFull),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }

    fn to_sqlx(self) -> PgSslMode {
        match self {
            Self::Disable => PgSslMode::Disable,
            Self::Prefer => PgSslMode::Prefer,
            Self::Require => PgSslMode::Require,
            Self::VerifyCa => PgSslMode::VerifyCa,
            Self::VerifyFull => PgSslMode::VerifyFull,
        }
    }

    fn from_sqlx(mode: PgSslMode) -> Self {
        match mode {
            PgSslMode::Disable => Self::Disable,
            // `allow` tries plain first; it is as weak as `prefer` and reported as such.
            PgSslMode::Allow | PgSslMode::Prefer => Self::Prefer,
            PgSslMode::Require => Self::Require,
            PgSslMode::VerifyCa => Self::VerifyCa,
            PgSslMode::VerifyFull => Self::VerifyFull,
        }
    }

    /// Whether the server's certificate is checked (against the CA file, else the system's roots).
    pub fn verifies(self) -> bool {
        matches!(self, Self::VerifyCa | Self::VerifyFull)
    }
}

#[derive(Clone)]
pub struct PgOptions {
    connect: PgConnectOptions,
    schema: String,
    ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password, nor the URL it came in.
        f.debug_struct("PgOptions")
            .field("host", &self.connect.get_host())
            .field("port", &self.connect.get_port())
            .field("database", &self.connect.get_database())
            .field("user", &self.connect.get_username())
            .field("tls", &self.tls())
            .field("ca_file", &self.ca_file)
            .field("schema", &self.schema)
            .finish()
    }
}

impl PgOptions {
    /// Parses a `postgres://` or `postgresql://` URL. `sslmode` and `sslrootcert` in its query
    /// work as libpq's do; `with_tls` sets them from configuration instead. The schema starts as
    /// `SCHEMA_DEFAULT`.
    pub fn from_url(url: &str) -> StoreResult<Self> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(StoreError::Settings("the database URL must start with postgres:// or postgresql://"));
        }
        // sqlx's parse error can quote the URL; it is replaced by a sentence of our own.
        let connect = PgConnectOptions::from_str(url)
            .map_err(|_| StoreError::Settings("the PostgreSQL URL does not parse"))?
            .application_name(APPLICATION_NAME);
        let options = Self { connect, schema: String::new(), ca_file: None };
        options.with_schema(SCHEMA_DEFAULT)
    }

    /// Puts the store's objects in `schema` (and only it on the search_path).
    pub fn with_schema(mut self, schema: &str) -> StoreResult<Self> {
        if !is_plain_identifier(schema) {
            return Err(StoreError::Settings(
                "a schema name must be 1 to 63 characters of a-z, 0-9 and _, not starting with a digit",
            ));
        }
        self.schema = schema.to_owned();
        self.connect = self.connect.options([("search_path", schema)]);
        Ok(self)
    }

    /// Sets the TLS mode and, for checking the server's certificate, a CA file (PEM). A CA file
    /// with a mode that does not verify is refused: it would suggest a check that is not made.
    pub fn with_tls(mut self, tls: PgTls, ca_file: Option<&Path>) -> StoreResult<Self> {
        if ca_file.is_some() && !tls.verifies() {
            return Err(StoreError::Settings("a CA file needs the TLS mode verify-ca or verify-full"));
        }
        self.connect = self.connect.ssl_mode(tls.to_sqlx());
        if let Some(path) = ca_file {
            self.connect = self.connect.ssl_root_cert(path);
            self.ca_file = Some(path.to_owned());
        }
        Ok(self)
    }

    /// The same server, database and settings as another role (the migrator's or the app's URL
    /// names the user; the schema and TLS settings carry over).
    pub fn for_role(&self, url: &str) -> StoreResult<Self> {
        let mut other = Self::from_url(url)?.with_schema(&self.schema)?;
        let tls = if url.contains("sslmode=") { other.tls() } else { self.tls() };
        other = other.with_tls(tls, if url.contains("sslrootcert=") { None } else { self.ca_file.as_deref() })?;
        Ok(other)
    }

    /// The same server, database, schema and TLS settings, as another role (a provisioned one),
    /// with its password when given (else whatever password these options carry, if any).
    pub fn as_role(&self, user: &str, password: Option<&str>) -> Self {
        let mut other = self.clone();
        other.connect = other.connect.username(user);
        if let Some(password) = password {
            other.connect = other.connect.password(password);
        }
        other
    }

    pub fn schema(&self) -> &str {
        &self.schema
    }

    pub fn tls(&self) -> PgTls {
        PgTls::from_sqlx(self.connect.get_ssl_mode())
    }

    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    pub fn host(&self) -> &str {
        self.connect.get_host()
    }

    pub fn user(&self) -> &str {
        self.connect.get_username()
    }

    /// One connection of its own (tests, and checks made before the pool opens).
    pub async fn connect(&self) -> StoreResult<sqlx::PgConnection> {
        use sqlx::Connection;
        Ok(sqlx::PgConnection::connect_with(&self.connect).await?)
    }

    pub(crate) fn connect_options(&self) -> PgConnectOptions {
        self.connect.clone()
    }
}

/// `[a-z_][a-z0-9_]*`, at most 63 characters: safe to write into DDL between double quotes.
pub(crate) fn is_plain_identifier(text: &str) -> bool {
    let mut chars = text.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    first_ok
        && text.len() <= SCHEMA_CHARS_MAX
        && text.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWORD: &str = "hunter2-Secret";

    #[test]
    fn verify_full_and_the_ca_file_are_taken_from_the_url_or_set() {
        let from_url = PgOptions::from_url("postgres://app@db.example:5433/rampart?sslmode=verify-full").expect("url");
        assert_eq!(from_url.tls(), PgTls::VerifyFull);
        assert_eq!((from_url.host(), from_url.user()), ("db.example", "app"));
        let set = PgOptions::from_url("postgresql://app@db.example/rampart")
            .expect("url")
            .with_tls(PgTls::VerifyFull, Some(Path::new("/etc/rampart/pg-ca.pem")))
            .expect("tls");
        assert_eq!(set.tls(), PgTls::VerifyFull);
        assert_eq!(set.ca_file(), Some(Path::new("/etc/rampart/pg-ca.pem")));
        let refused = PgOptions::from_url("postgres://app@db/rampart")
            .expect("url")
            .with_tls(PgTls::Require, Some(Path::new("/ca.pem")));
        assert!(refused.is_err(), "a CA file with a mode that does not verify is refused");
    }

    #[test]
    fn debug_never_shows_the_password() {
        let options = PgOptions::from_url(&format!("postgres://app:{PASSWORD}@db/rampart")).expect("url");
        let printed = format!("{options:?}");
        assert!(!printed.contains(PASSWORD), "{printed}");
        assert!(printed.contains("db"), "{printed}");
    }

    #[test]
    fn errors_never_quote_the_url() {
        let error = PgOptions::from_url(&format!("postgres://app:{PASSWORD}@db:notaport/x")).expect_err("bad port");
        assert!(!error.to_string().contains(PASSWORD), "{error}");
        assert!(PgOptions::from_url("mysql://x").is_err());
    }

    #[test]
    fn schema_names_are_plain_identifiers() {
        for good in ["rampart", "rampart_test_1a2b", "_x"] {
            assert!(is_plain_identifier(good), "{good}");
        }
        for bad in ["", "Rampart", "1abc", "a-b", "a\"b", "a;drop", &"a".repeat(64)] {
            assert!(!is_plain_identifier(bad), "{bad}");
        }
    }
}
