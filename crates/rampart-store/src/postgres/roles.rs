//! Least privilege on PostgreSQL. `provision` (run with an administrator's connection) creates, idempotently,
//! the schema and three roles named after it: `<schema>_migrator` owns the tables and runs the
//! migrations (DDL), `<schema>_app` may SELECT/INSERT/UPDATE/DELETE the application's tables but
//! only INSERT and SELECT the audit tables (the append-only trigger refuses the rest even to the
//! owner), and `<schema>_auditor` may only read the audit tables. `privilege_problems` is what
//! `rampart serve` asks of its own connection before it starts: a superuser, an owner of the
//! tables, or a role that can create objects is refused.
//!
//! Identifiers and the new roles' passwords cannot be parameters of DDL; they are quoted by the
//! server itself (`format('%I')`, `format('%L')`), and the schema is a plain identifier besides. A
//! password is sent only as its SCRAM-SHA-256 verifier, computed here: the password itself never
//! reaches the server, its statement log or its statistics.

use sqlx::{Connection, PgConnection, Row};

use super::options::is_plain_identifier;
use super::{advisory_lock, lock_keys, PgOptions, MIGRATIONS};
use crate::shared::migrator;
use crate::{StoreError, StoreResult};

/// Longest schema name that leaves room for a role suffix within PostgreSQL's 63 characters.
const PROVISION_SCHEMA_CHARS_MAX: usize = 54;
/// The tables of the audit log proper: records and their signed checkpoints.
const AUDIT_RECORD_TABLES: [&str; 2] = ["audit_log", "audit_checkpoints"];
/// How far each SIEM collector has got: the app moves it forward, the auditor may read it.
const AUDIT_CURSOR_TABLE: &str = "audit_forward_cursor";
/// sqlx's record of applied migrations: the app may read it (to check the schema is current).
const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// What the three roles of a schema are called.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleNames {
    pub migrator: String,
    pub app: String,
    pub auditor: String,
}

impl RoleNames {
    pub fn for_schema(schema: &str) -> Self {
        RoleNames {
            migrator: format!("{schema}_migrator"),
            app: format!("{schema}_app"),
            auditor: format!("{schema}_auditor"),
        }
    }

    fn all(&self) -> [&str; 3] {
        [&self.migrator, &self.app, &self.auditor]
    }
}

/// One role as provisioning left it. `password` is set only when the role was made now: it is
/// shown once and never stored; an existing role keeps its password.
pub struct ProvisionedRole {
    pub name: String,
    pub password: Option<zeroize::Zeroizing<String>>,
}

impl std::fmt::Debug for ProvisionedRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let password = if self.password.is_some() { "[redacted]" } else { "unchanged" };
        f.debug_struct("ProvisionedRole").field("name", &self.name).field("password", &password).finish()
    }
}

#[derive(Debug)]
pub struct ProvisionReport {
    pub schema: String,
    pub roles: Vec<ProvisionedRole>,
}

/// Why a connection is not fit to serve with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrivilegeProblem {
    Superuser,
    /// It owns (or has the privileges of an owner of) this many objects in the schema.
    OwnsObjects(u64),
    /// It may create objects in these schemas.
    CanCreateInSchemas(Vec<String>),
    CanCreateInDatabase,
}

impl std::fmt::Display for PrivilegeProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Superuser => f.write_str("the role is a superuser"),
            Self::OwnsObjects(n) => write!(f, "the role owns {n} of the schema's tables or other objects"),
            Self::CanCreateInSchemas(list) => write!(f, "the role can create objects in schema {}", list.join(", ")),
            Self::CanCreateInDatabase => f.write_str("the role can create schemas in the database"),
        }
    }
}

/// Builds a statement with identifiers (and literals) quoted by the server.
async fn formatted(conn: &mut PgConnection, template: &str, args: &[&str]) -> StoreResult<String> {
    let mut query = sqlx::query_scalar::<_, String>(template);
    for arg in args {
        query = query.bind(*arg);
    }
    Ok(query.fetch_one(&mut *conn).await?)
}

async fn execute_formatted(conn: &mut PgConnection, template: &str, args: &[&str]) -> StoreResult<()> {
    let sql = formatted(conn, template, args).await?;
    sqlx::raw_sql(&sql).execute(&mut *conn).await?;
    Ok(())
}

async fn role_exists(conn: &mut PgConnection, name: &str) -> StoreResult<bool> {
    Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
        .bind(name)
        .fetch_one(&mut *conn)
        .await?)
}

async fn schema_exists(conn: &mut PgConnection, schema: &str) -> StoreResult<bool> {
    Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
        .bind(schema)
        .fetch_one(&mut *conn)
        .await?)
}

/// Creates a login role with no special attributes (or strips them from an existing one).
/// Returns the new password when the role was made now.
async fn ensure_role(
    conn: &mut PgConnection,
    name: &str,
    new_password: &mut dyn FnMut() -> String,
) -> StoreResult<Option<zeroize::Zeroizing<String>>> {
    const ATTRIBUTES: &str = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT";
    if role_exists(conn, name).await? {
        execute_formatted(conn, &format!("SELECT format('ALTER ROLE %I {ATTRIBUTES}', $1)"), &[name]).await?;
        return Ok(None);
    }
    let password = zeroize::Zeroizing::new(new_password());
    let verifier = rampart_crypto::scram::scram_sha256_verifier(&password);
    let sql = formatted(
        conn,
        &format!("SELECT format('CREATE ROLE %I {ATTRIBUTES} PASSWORD %L', $1, $2)"),
        &[name, &verifier],
    )
    .await?;
    sqlx::raw_sql(&sql).execute(&mut *conn).await?;
    Ok(Some(password))
}

/// Creates (or brings back in line) the schema, its three roles and their grants, and migrates
/// the schema as the migrator. Safe to run again: existing roles keep their passwords, and grants
/// are set to what they should be. `admin` must be a superuser (or own the database and have
/// CREATEROLE); its schema names the one to provision.
pub async fn provision(admin: &PgOptions, new_password: &mut dyn FnMut() -> String) -> StoreResult<ProvisionReport> {
    let schema = admin.schema().to_owned();
    if schema.len() > PROVISION_SCHEMA_CHARS_MAX || !is_plain_identifier(&schema) {
        return Err(StoreError::Settings("a schema to provision must be a plain name of at most 54 characters"));
    }
    let names = RoleNames::for_schema(&schema);
    let mut conn = PgConnection::connect_with(&admin.connect_options()).await?;
    let mut tx = conn.begin().await?;
    advisory_lock(&mut tx, lock_keys::PROVISION).await?;
    let mut roles = Vec::with_capacity(3);
    for name in names.all() {
        let password = ensure_role(&mut tx, name, new_password).await?;
        roles.push(ProvisionedRole { name: name.to_owned(), password });
    }
    if schema_exists(&mut tx, &schema).await? {
        execute_formatted(&mut tx, "SELECT format('ALTER SCHEMA %I OWNER TO %I', $1, $2)", &[&schema, &names.migrator])
            .await?;
    } else {
        execute_formatted(
            &mut tx,
            "SELECT format('CREATE SCHEMA %I AUTHORIZATION %I', $1, $2)",
            &[&schema, &names.migrator],
        )
        .await?;
    }
    for template in [
        "SELECT format('REVOKE ALL ON SCHEMA %I FROM PUBLIC', $1)",
        "SELECT format('GRANT CONNECT ON DATABASE %I TO %I, %I, %I', current_database(), $2, $3, $4)",
        "SELECT format('GRANT USAGE ON SCHEMA %I TO %I, %I', $1, $3, $4)",
        // Tables the migrator makes later are the app's to use; the audit tables are narrowed below.
        "SELECT format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %I GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO %I', $2, $1, $3)",
    ] {
        execute_formatted(&mut tx, template, &[&schema, &names.migrator, &names.app, &names.auditor]).await?;
    }
    // Before PostgreSQL 15 every role may create objects in `public`; 15 made this the default.
    // The app role would otherwise be refused by `privilege_problems`.
    if schema_exists(&mut tx, "public").await? {
        sqlx::raw_sql("REVOKE CREATE ON SCHEMA public FROM PUBLIC").execute(&mut *tx).await?;
    }
    tx.commit().await?;
    // The migrations run as the migrator, so it owns every table they make.
    execute_formatted(&mut conn, "SELECT format('SET ROLE %I', $1)", &[&names.migrator]).await?;
    migrator(MIGRATIONS).run(&mut conn).await?;
    grant_table_privileges(&mut conn, &names).await?;
    sqlx::raw_sql("RESET ROLE").execute(&mut conn).await?;
    conn.close().await?;
    Ok(ProvisionReport { schema, roles })
}

/// The grants on tables that exist now, set by their owner (the migrator, the session's role):
/// the app's on every table, narrowed on the audit tables and the migrations record; the
/// auditor's on the audit tables only.
async fn grant_table_privileges(conn: &mut PgConnection, names: &RoleNames) -> StoreResult<()> {
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1")
            .fetch_all(&mut *conn)
            .await?;
    for table in &tables {
        let (app, auditor) = match table.as_str() {
            t if AUDIT_RECORD_TABLES.contains(&t) => ("SELECT, INSERT", true),
            AUDIT_CURSOR_TABLE => ("SELECT, INSERT, UPDATE", true),
            MIGRATIONS_TABLE => ("SELECT", false),
            _ => ("SELECT, INSERT, UPDATE, DELETE", false),
        };
        let args = [table.as_str(), names.app.as_str(), names.auditor.as_str()];
        execute_formatted(conn, "SELECT format('REVOKE ALL ON %I FROM PUBLIC, %I, %I', $1, $2, $3)", &args).await?;
        execute_formatted(conn, &format!("SELECT format('GRANT {app} ON %I TO %I', $1, $2)"), &args).await?;
        if auditor {
            execute_formatted(conn, "SELECT format('GRANT SELECT ON %I TO %I', $1, $3)", &args).await?;
        }
    }
    Ok(())
}

/// What is wrong with serving over this connection: a superuser, an owner of the schema's objects,
/// or a role that can create objects (in any schema, or schemas in the database). Empty when the
/// role is fit.
pub async fn privilege_problems(options: &PgOptions) -> StoreResult<Vec<PrivilegeProblem>> {
    let mut conn = PgConnection::connect_with(&options.connect_options()).await?;
    let mut problems = Vec::new();
    let superuser: bool =
        sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetch_one(&mut conn).await?;
    if superuser {
        problems.push(PrivilegeProblem::Superuser);
    }
    let owned: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = $1 AND pg_has_role(current_user, c.relowner, 'USAGE')",
    )
    .bind(options.schema())
    .fetch_one(&mut conn)
    .await?;
    if owned > 0 {
        problems.push(PrivilegeProblem::OwnsObjects(u64::try_from(owned).unwrap_or(0)));
    }
    // Temporary schemas are every role's by default and vanish with the session; not counted.
    let rows = sqlx::query(
        "SELECT nspname::text AS name FROM pg_namespace
         WHERE has_schema_privilege(current_user, oid, 'CREATE')
           AND nspname NOT LIKE 'pg\\_temp\\_%' AND nspname NOT LIKE 'pg\\_toast\\_temp\\_%'
         ORDER BY nspname",
    )
    .fetch_all(&mut conn)
    .await?;
    let schemas = rows.iter().map(|row| row.try_get::<String, _>("name")).collect::<Result<Vec<_>, _>>()?;
    if !schemas.is_empty() {
        problems.push(PrivilegeProblem::CanCreateInSchemas(schemas));
    }
    let create_in_database: bool =
        sqlx::query_scalar("SELECT has_database_privilege(current_user, current_database(), 'CREATE')")
            .fetch_one(&mut conn)
            .await?;
    if create_in_database {
        problems.push(PrivilegeProblem::CanCreateInDatabase);
    }
    conn.close().await?;
    Ok(problems)
}

/// Whether the schema has every migration this build knows (the app role cannot migrate; it
/// refuses to start on an older schema rather than fail on a missing column later).
pub async fn schema_is_current(options: &PgOptions) -> StoreResult<bool> {
    let mut conn = PgConnection::connect_with(&options.connect_options()).await?;
    let table: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(format!("{}.{MIGRATIONS_TABLE}", options.schema()))
        .fetch_one(&mut conn)
        .await?;
    let current = match table {
        None => false,
        Some(_) => {
            let applied: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&mut conn)
                .await?;
            applied >= MIGRATIONS.last().map(|(version, _, _)| *version)
        }
    };
    conn.close().await?;
    Ok(current)
}
