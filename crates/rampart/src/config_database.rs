//! The `[database]` section, and which store `database_url` names: the embedded SQLite store (no
//! URL, or `sqlite:`) or PostgreSQL (`postgres://`, `postgresql://`) with its schema, TLS mode and
//! CA file (`verify-full` checks the server's certificate against the CA and its name against the
//! host), the migrator's URL (migrations run only through it), and the explicit override that lets
//! `serve` start on a role with more privileges than it needs (logged and audited at every start).

use std::path::PathBuf;

use rampart_store::{PgOptions, PgTls};
use secrecy::ExposeSecret;
use serde::Deserialize;

use crate::config::{bad, ConfigError};
use crate::secrets::{self, EnvLookup, SecretValue, UserInfo};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDatabase {
    /// The schema of Rampart's tables (default `rampart`, as `rampart db provision` makes it).
    pub schema: Option<String>,
    /// libpq's sslmode: `disable`, `prefer`, `require`, `verify-ca` or `verify-full`.
    pub tls: Option<String>,
    /// The CA certificate(s), PEM, the server's certificate must chain to; implies `verify-full`
    /// when `tls` is not set.
    pub ca_file: Option<PathBuf>,
    /// The migrator role's URL (a reference when it carries a password). Without it `serve` runs
    /// no migration and refuses a schema older than this build.
    pub migrator_url: Option<String>,
    /// Start even when the app role is a superuser, owns tables or can create objects: a warning
    /// and an audit record at every start. For a development database only.
    pub allow_privileged_role: Option<bool>,
}

/// The store a deployment uses.
#[derive(Clone, Debug)]
pub enum DatabaseConfig {
    /// `data_dir/rampart.db`, the audit log in `audit_dir/audit.db`.
    Sqlite,
    /// Boxed: the connection options are large beside the SQLite unit.
    Postgres(Box<PostgresConfig>),
}

/// PostgreSQL, as the app role sees it. Debug prints no password (`PgOptions` hides it).
#[derive(Clone, Debug)]
pub struct PostgresConfig {
    pub app: PgOptions,
    pub migrator: Option<PgOptions>,
    pub allow_privileged_role: bool,
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

impl RawDatabase {
    fn is_empty(&self) -> bool {
        self.schema.is_none()
            && self.tls.is_none()
            && self.ca_file.is_none()
            && self.migrator_url.is_none()
            && self.allow_privileged_role.is_none()
    }

    /// The store `database_url` (already resolved from its reference) names, with this section
    /// applied; and the warnings to log (a secret read from the environment).
    pub fn validate(
        self,
        database_url: Option<&SecretValue>,
        env: EnvLookup,
    ) -> Result<(DatabaseConfig, Vec<String>), ConfigError> {
        let Some(url) = database_url.map(|u| u.expose_secret()).filter(|u| is_postgres(u)) else {
            if !self.is_empty() {
                return Err(bad("database", "this section applies to PostgreSQL only; database_url names SQLite"));
            }
            return Ok((DatabaseConfig::Sqlite, Vec::new()));
        };
        // The store's sentences never quote the URL, so they can be shown as they are.
        let mut app = PgOptions::from_url(url).map_err(|e| bad("database_url", e.to_string()))?;
        if let Some(schema) = &self.schema {
            app = app.with_schema(schema).map_err(|e| bad("database.schema", e.to_string()))?;
        }
        let tls = match self.tls.as_deref() {
            Some(text) => Some(PgTls::parse(text).ok_or_else(|| {
                bad("database.tls", format!("`{text}` is not one of disable, prefer, require, verify-ca, verify-full"))
            })?),
            None if self.ca_file.is_some() => Some(PgTls::VerifyFull),
            None => None,
        };
        if let Some(path) = &self.ca_file {
            if !path.is_file() {
                return Err(bad("database.ca_file", format!("{} is not a readable file", path.display())));
            }
        }
        if let Some(tls) = tls {
            app = app.with_tls(tls, self.ca_file.as_deref()).map_err(|e| bad("database.ca_file", e.to_string()))?;
        }
        let mut warnings = Vec::new();
        let migrator = match self.migrator_url.as_deref() {
            Some(text) => {
                let resolved = secrets::secret_url("database.migrator_url", text, UserInfo::NameOnly, env)?;
                warnings.extend(resolved.warning);
                let url = resolved.value.expose_secret();
                if !is_postgres(url) {
                    return Err(bad("database.migrator_url", "must be a postgres:// URL on the same server"));
                }
                Some(app.for_role(url).map_err(|e| bad("database.migrator_url", e.to_string()))?)
            }
            None => None,
        };
        let config =
            PostgresConfig { app, migrator, allow_privileged_role: self.allow_privileged_role.unwrap_or(false) };
        Ok((DatabaseConfig::Postgres(Box::new(config)), warnings))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::config::RawConfig;

    const PASSWORD: &str = "pg-Secret-91c2";

    fn postgres(text: &str) -> PostgresConfig {
        let raw: RawConfig = toml::from_str(text).expect("toml");
        match raw.validate().expect("valid").database {
            DatabaseConfig::Postgres(config) => *config,
            DatabaseConfig::Sqlite => panic!("SQLite"),
        }
    }

    fn error(text: &str) -> ConfigError {
        let raw: RawConfig = toml::from_str(text).expect("toml");
        raw.validate().expect_err("refused")
    }

    #[test]
    fn verify_full_with_a_ca_file_is_parsed() {
        let dir = tempfile::tempdir().expect("dir");
        let ca = dir.path().join("pg-ca.pem");
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\n").expect("write");
        let config = postgres(&format!(
            "database_url = \"postgres://rampart_app@db.example:5432/rampart\"\n\
             [database]\ntls = \"verify-full\"\nca_file = \"{}\"\nschema = \"chat\"\n",
            ca.display()
        ));
        assert_eq!(config.app.tls(), PgTls::VerifyFull);
        assert_eq!(config.app.ca_file(), Some(ca.as_path()));
        assert_eq!((config.app.host(), config.app.user(), config.app.schema()), ("db.example", "rampart_app", "chat"));
        assert!(!config.allow_privileged_role);
        // A CA file alone means verify-full.
        let implied = postgres(&format!(
            "database_url = \"postgresql://rampart_app@db/rampart\"\n[database]\nca_file = \"{}\"\n",
            ca.display()
        ));
        assert_eq!(implied.app.tls(), PgTls::VerifyFull);
        // libpq's URL parameters work too.
        let from_url = postgres(
            "database_url = \"postgres://rampart_app@db/rampart?sslmode=verify-full&sslrootcert=/etc/ca.pem\"",
        );
        assert_eq!(from_url.app.tls(), PgTls::VerifyFull);
    }

    #[test]
    fn bad_tls_settings_are_refused_naming_the_key() {
        let url = "database_url = \"postgres://rampart_app@db/rampart\"\n";
        assert_eq!(error(&format!("{url}[database]\ntls = \"maybe\"\n")).key, "database.tls");
        assert_eq!(error(&format!("{url}[database]\nca_file = \"/nonexistent/ca.pem\"\n")).key, "database.ca_file");
        let dir = tempfile::tempdir().expect("dir");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "x").expect("write");
        let weak = error(&format!("{url}[database]\ntls = \"require\"\nca_file = \"{}\"\n", ca.display()));
        assert_eq!(weak.key, "database.ca_file", "a CA file that would not be checked is refused");
        assert_eq!(error("[database]\ntls = \"verify-full\"\n").key, "database", "SQLite has no [database]");
    }

    #[test]
    fn the_migrator_url_is_a_secret_reference_and_carries_the_settings_over() {
        let url = "database_url = \"postgres://rampart_app@db/rampart\"\n";
        let literal = error(&format!("{url}[database]\nmigrator_url = \"postgres://m:{PASSWORD}@db/rampart\"\n"));
        assert_eq!(literal.key, "database.migrator_url");
        assert!(!literal.to_string().contains(PASSWORD), "{literal}");
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("migrator-url");
        std::fs::write(&file, format!("postgres://rampart_migrator:{PASSWORD}@db/rampart\n")).expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let config = postgres(&format!(
            "{url}[database]\nschema = \"chat\"\ntls = \"require\"\nmigrator_url = \"file:{}\"\n",
            file.display()
        ));
        let migrator = config.migrator.expect("migrator");
        assert_eq!((migrator.user(), migrator.schema(), migrator.tls()), ("rampart_migrator", "chat", PgTls::Require));
        assert!(!format!("{:?}", config.app).contains(PASSWORD));
        assert!(!format!("{migrator:?}").contains(PASSWORD), "Debug never shows the password");
    }
}
