//! Opens a deployment's stores: the embedded SQLite database and audit file, or PostgreSQL as the
//! app role. On PostgreSQL, migrations run only through the migrator's URL (the app role cannot
//! and should not change the schema), a schema older than this build is refused, and so is an app
//! role with more privilege than it needs — a superuser, an owner of the tables, or a role that
//! can create objects — unless `database.allow_privileged_role` is set, which is logged as a
//! warning here and audited by the caller once the application runs.

use std::sync::Arc;

use anyhow::Context;
use rampart_store::postgres::roles::{privilege_problems, schema_is_current, PrivilegeProblem};
use rampart_store::{AuditStore, Backend, KeyConfig};

use crate::config::Config;
use crate::config_database::{DatabaseConfig, PostgresConfig};

/// The SQLite audit log's file in `audit_dir`.
pub const AUDIT_FILE: &str = "audit.db";

/// The audit action recorded at each start that went ahead on an over-privileged role.
pub const PRIVILEGE_OVERRIDE_ACTION: &str = "db.privilege_check_overridden";

pub struct Stores {
    pub backend: Arc<dyn Backend>,
    pub audit: Arc<dyn AuditStore>,
    /// What the override let through; each is audited once the application runs.
    pub overridden: Vec<PrivilegeProblem>,
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores").field("overridden", &self.overridden).finish_non_exhaustive()
    }
}

pub async fn open(config: &Config, keys: &KeyConfig) -> anyhow::Result<Stores> {
    match &config.database {
        DatabaseConfig::Sqlite => open_sqlite(config, keys).await,
        DatabaseConfig::Postgres(postgres) => open_postgres(config, postgres, keys).await,
    }
}

async fn open_sqlite(config: &Config, keys: &KeyConfig) -> anyhow::Result<Stores> {
    let mut store = rampart_store::SqliteStore::open(&config.data_dir.join("rampart.db"), keys)
        .await
        .with_context(|| format!("cannot open the database in {}", config.data_dir.display()))?;
    if !config.search_enabled {
        store = store.without_search_index().await.context("cannot turn the search index off")?;
    }
    store.spawn_checkpointer();
    let audit = rampart_store::SqliteAuditStore::open(&config.audit_dir.join(AUDIT_FILE))
        .await
        .with_context(|| format!("cannot open the audit log in {}", config.audit_dir.display()))?;
    Ok(Stores { backend: Arc::new(store), audit: Arc::new(audit), overridden: Vec::new() })
}

/// The audit log a deployment already has, for `rampart audit`, and where it is (for messages):
/// nothing is created and no migration runs. On SQLite the file must exist, and is opened
/// read-only unless `writable`; on PostgreSQL the audit tables must exist (any role that may read
/// them will do, the auditor's too).
pub async fn open_existing_audit(config: &Config, writable: bool) -> anyhow::Result<(Arc<dyn AuditStore>, String)> {
    match &config.database {
        DatabaseConfig::Sqlite => {
            let path = crate::fsutil::absolute(&config.audit_dir.join(AUDIT_FILE));
            let place = path.display().to_string();
            if !path.is_file() {
                anyhow::bail!(
                    "no audit log at {place}: name the server's audit directory with --audit-dir (or audit_dir in --config)"
                );
            }
            let store = rampart_store::SqliteAuditStore::open_existing(&path, writable)
                .await
                .with_context(|| format!("cannot open the audit log at {place}"))?;
            Ok((Arc::new(store), place))
        }
        DatabaseConfig::Postgres(postgres) => {
            let app = &postgres.app;
            let place = format!("schema {} in PostgreSQL", app.schema());
            let store = rampart_store::PgAuditStore::open_existing(app)
                .await
                .with_context(|| format!("cannot read the audit log in {place} as {}", app.user()))?
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "no audit log in {place}: the schema is missing or not migrated (run `rampart db provision`, or \
                         start the server with database.migrator_url)"
                    )
                })?;
            Ok((Arc::new(store), place))
        }
    }
}

/// Whether to go on with a role that has `problems`: refused (with every reason, and the fix)
/// unless `allow` is set; then the problems are returned, to be warned about and audited.
pub fn decide_privileges(problems: Vec<PrivilegeProblem>, allow: bool) -> Result<Vec<PrivilegeProblem>, String> {
    if problems.is_empty() || allow {
        return Ok(problems);
    }
    let reasons = problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
    Err(format!(
        "refusing to serve over PostgreSQL as this role: {reasons}. Connect as the app role `rampart db provision` \
         made (its migrator runs the migrations through database.migrator_url), or for a development database \
         only set database.allow_privileged_role = true"
    ))
}

async fn open_postgres(config: &Config, postgres: &PostgresConfig, keys: &KeyConfig) -> anyhow::Result<Stores> {
    let app = &postgres.app;
    if let Some(migrator) = &postgres.migrator {
        rampart_store::postgres::migrate(migrator)
            .await
            .with_context(|| format!("cannot migrate schema {} as {}", migrator.schema(), migrator.user()))?;
    }
    let current = schema_is_current(app)
        .await
        .with_context(|| format!("cannot reach PostgreSQL at {} as {}", app.host(), app.user()))?;
    if !current {
        anyhow::bail!(
            "schema {} in PostgreSQL is missing or older than this build: set database.migrator_url (the migrator \
             role runs the migrations), or run `rampart db provision`",
            app.schema()
        );
    }
    let problems = privilege_problems(app).await.context("cannot check the database role's privileges")?;
    let overridden = decide_privileges(problems, postgres.allow_privileged_role).map_err(anyhow::Error::msg)?;
    for problem in &overridden {
        tracing::warn!(
            role = %app.user(),
            %problem,
            "SERVING ON AN OVER-PRIVILEGED DATABASE ROLE because database.allow_privileged_role is set; \
             a compromised server could change the schema or the audit log's protections"
        );
    }
    let store =
        rampart_store::PgStore::open_with_search(app, config.data_dir.join("blobs"), keys, config.search_enabled)
            .await
            .with_context(|| format!("cannot open schema {} in PostgreSQL", app.schema()))?;
    let audit = rampart_store::PgAuditStore::open(app).await.context("cannot open the audit log in PostgreSQL")?;
    Ok(Stores { backend: Arc::new(store), audit: Arc::new(audit), overridden })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_over_privileged_role_is_refused_unless_overridden() {
        assert_eq!(decide_privileges(Vec::new(), false), Ok(Vec::new()));
        for problem in [
            PrivilegeProblem::Superuser,
            PrivilegeProblem::OwnsObjects(12),
            PrivilegeProblem::CanCreateInSchemas(vec!["rampart".to_owned()]),
            PrivilegeProblem::CanCreateInDatabase,
        ] {
            let refused = decide_privileges(vec![problem.clone()], false).expect_err("refused");
            assert!(refused.contains(&problem.to_string()), "{refused}");
            assert!(refused.contains("allow_privileged_role"), "the refusal names the override: {refused}");
            assert_eq!(decide_privileges(vec![problem.clone()], true), Ok(vec![problem]), "let through, to audit");
        }
    }
}
