//! Least privilege on the real PostgreSQL: `provision` makes the schema and its three roles
//! (idempotently); the privilege check refuses a superuser and the tables' owner and passes the
//! app role; the app role runs the whole conformance suite yet the database itself refuses its
//! UPDATE and DELETE of audit records (and the owner's, by trigger); the auditor only reads; and a
//! record changed past the trigger (by a superuser) is found by the chain's verification.
//! Like `conformance_postgres`, it skips without `RAMPART_TEST_POSTGRES_URL` unless `CI=true`.
//! Each run provisions a schema and roles of its own and drops them at the end, pass or fail.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use sqlx::{Connection, PgConnection};

use rampart_core::Timestamp;
use rampart_store::postgres::roles::{privilege_problems, provision, schema_is_current, PrivilegeProblem, RoleNames};
use rampart_store::{conformance, AuditEntry, AuditStore, EpochPolicy, KeyConfig, PgAuditStore, PgOptions, PgStore};

const URL_VARIABLE: &str = "RAMPART_TEST_POSTGRES_URL";
/// PostgreSQL's SQLSTATE for "permission denied" (and for the audit trigger's refusal).
const INSUFFICIENT_PRIVILEGE: &str = "42501";

fn server_url() -> Option<String> {
    match std::env::var(URL_VARIABLE) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{URL_VARIABLE} is not set, and CI=true: the PostgreSQL role tests must run in CI")
        }
        _ => {
            eprintln!("note: {URL_VARIABLE} is not set; skipping the PostgreSQL role tests");
            None
        }
    }
}

fn private_dir(path: PathBuf) -> PathBuf {
    std::fs::create_dir_all(&path).expect("dir");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    path
}

fn fresh_schema_name() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    // Short: role names add a suffix and must stay within 63 characters.
    format!("rampart_t{:x}", nanos % (1 << 40))
}

fn password() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("test-password-{}", N.fetch_add(1, Ordering::Relaxed))
}

/// Drops the schema and the roles (their privileges first; roles are cluster-wide).
async fn clean_up(url: &str, schema: &str) {
    let mut admin = PgConnection::connect(url).await.expect("connect");
    sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")).execute(&mut admin).await.expect("drop");
    let names = RoleNames::for_schema(schema);
    for role in [&names.app, &names.auditor, &names.migrator] {
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
            .bind(role)
            .fetch_one(&mut admin)
            .await
            .expect("role");
        if exists {
            sqlx::raw_sql(&format!("DROP OWNED BY \"{role}\"; DROP ROLE \"{role}\""))
                .execute(&mut admin)
                .await
                .expect("drop role");
        }
    }
    admin.close().await.expect("close");
}

fn sqlstate(result: Result<sqlx::postgres::PgQueryResult, sqlx::Error>) -> Option<String> {
    match result {
        Err(sqlx::Error::Database(error)) => error.code().map(|c| c.into_owned()),
        Err(other) => panic!("not a database refusal: {other}"),
        Ok(done) => panic!("the database allowed it ({} rows)", done.rows_affected()),
    }
}

fn entry() -> AuditEntry {
    AuditEntry {
        at: Timestamp(1_800_000_000_000),
        actor: "system".to_owned(),
        action: "test.record".to_owned(),
        target: None,
        ip: None,
        user_agent: None,
        outcome: "success",
        details: "{}".to_owned(),
    }
}

async fn least_privilege_checks(url: String, schema: String) {
    let admin = PgOptions::from_url(&url).expect("url").with_schema(&schema).expect("schema");
    let report = provision(&admin, &mut password).await.expect("provision");
    assert_eq!(report.roles.len(), 3);
    assert!(report.roles.iter().all(|r| r.password.is_some()), "new roles get passwords: {report:?}");
    assert!(!format!("{report:?}").contains("test-password"), "Debug never shows a password");
    let again = provision(&admin, &mut password).await.expect("provision again");
    assert!(again.roles.iter().all(|r| r.password.is_none()), "existing roles keep their passwords");
    assert!(schema_is_current(&admin).await.expect("current"));

    let names = RoleNames::for_schema(&schema);
    let (app, migrator, auditor) =
        (admin.as_role(&names.app, None), admin.as_role(&names.migrator, None), admin.as_role(&names.auditor, None));
    let superuser = privilege_problems(&admin).await.expect("check");
    assert!(superuser.contains(&PrivilegeProblem::Superuser), "{superuser:?}");
    let owner = privilege_problems(&migrator).await.expect("check");
    assert!(owner.iter().any(|p| matches!(p, PrivilegeProblem::OwnsObjects(n) if *n > 0)), "{owner:?}");
    assert!(owner.iter().any(|p| matches!(p, PrivilegeProblem::CanCreateInSchemas(_))), "{owner:?}");
    assert_eq!(privilege_problems(&app).await.expect("check"), Vec::new(), "the app role is fit to serve");
    assert!(schema_is_current(&app).await.expect("the app may read the migrations record"));

    // The app role's grants are enough for everything the application does.
    let root = tempfile::tempdir().expect("temp dir");
    let keys = KeyConfig { key_dir: private_dir(root.path().join("keys")), epoch: EpochPolicy::default() };
    let store = PgStore::open(&app, private_dir(root.path().join("blobs")), &keys).await.expect("open as app");
    conformance::run_all(&store).await;
    store.close().await;
    let audit = PgAuditStore::open(&app).await.expect("audit as app");
    audit.append(&entry()).await.expect("append");
    audit.append(&entry()).await.expect("append");
    audit.set_forward_cursor("tcp://siem:6514", 1).await.expect("the app moves the forwarding cursor");
    assert!(audit.verify(None, Vec::new(), Some(2)).await.expect("verify").ok);
    audit.close().await;

    // The database refuses changing or removing audit records: the app by its grants, the owner
    // by the trigger.
    for (who, options) in [("app", &app), ("migrator", &migrator)] {
        let mut conn = options.connect().await.expect("connect");
        for sql in [
            "UPDATE audit_log SET actor = 'someone else' WHERE seq = 1",
            "DELETE FROM audit_log WHERE seq = 2",
            "DELETE FROM audit_checkpoints",
            "TRUNCATE audit_log",
        ] {
            let code = sqlstate(sqlx::query(sql).execute(&mut conn).await);
            assert_eq!(code.as_deref(), Some(INSUFFICIENT_PRIVILEGE), "{who}: {sql}");
        }
        conn.close().await.expect("close");
    }
    // The auditor reads the audit tables and nothing else.
    let mut conn = auditor.connect().await.expect("connect");
    let records: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log").fetch_one(&mut conn).await.expect("read");
    assert_eq!(records, 2);
    for sql in ["SELECT 1 FROM users", "INSERT INTO audit_forward_cursor (target, seq) VALUES ('x', 1)"] {
        let code = sqlstate(sqlx::query(sql).execute(&mut conn).await);
        assert_eq!(code.as_deref(), Some(INSUFFICIENT_PRIVILEGE), "auditor: {sql}");
    }
    conn.close().await.expect("close");

    // Past the trigger (a superuser disabling it), a changed record still breaks the chain.
    let mut superuser = admin.connect().await.expect("connect");
    sqlx::raw_sql(
        "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only;
         UPDATE audit_log SET actor = 'someone else' WHERE seq = 2;
         ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only;",
    )
    .execute(&mut superuser)
    .await
    .expect("tamper as a superuser");
    superuser.close().await.expect("close");
    let audit = PgAuditStore::open(&app).await.expect("audit as app");
    let report = audit.verify(None, Vec::new(), Some(2)).await.expect("verify");
    assert_eq!((report.ok, report.first_bad_seq), (false, Some(2)), "{report:?}");
    audit.close().await;
}

#[test]
fn provisioned_roles_hold_the_app_to_least_privilege() {
    let Some(url) = server_url() else { return };
    let schema = fresh_schema_name();
    let (url_for_check, schema_for_check) = (url.clone(), schema.clone());
    let outcome = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
        runtime.block_on(least_privilege_checks(url_for_check, schema_for_check));
    })
    .join();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(clean_up(&url, &schema));
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
