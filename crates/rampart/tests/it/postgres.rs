//! PostgreSQL as the real binary meets it: `rampart db provision` makes the schema and its roles;
//! `rampart serve` refuses a superuser and the tables' owner (exit 1, naming why), serves as the
//! app role (migrations through the migrator's URL) with accounts and the audit log in
//! PostgreSQL, and starts on a privileged role only when told to — with that on the audit record.
//! Skips without `RAMPART_TEST_POSTGRES_URL`, except under `CI=true`, where that fails.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

use crate::support::{Dirs, Server, BIN};

const URL_VARIABLE: &str = "RAMPART_TEST_POSTGRES_URL";
/// How long a refused start may take before the test calls it a hang.
const REFUSAL_WAIT: Duration = Duration::from_secs(30);

pub(crate) fn server_url() -> Option<String> {
    crate::support::service_url(URL_VARIABLE, "PostgreSQL")
}

/// `url` as another user (with that user's password, if any).
fn as_user(url: &str, user: &str, password: Option<&str>) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let host = rest.split_once('@').map_or(rest, |(_, host)| host);
    match password {
        Some(password) => format!("{scheme}://{user}:{password}@{host}"),
        None => format!("{scheme}://{user}@{host}"),
    }
}

/// Drops the schema and its roles when the test ends, pass or fail.
pub(crate) struct Cleanup {
    url: String,
    schema: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.schema.clone());
        let done = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&url).await.expect("connect");
                sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                    .execute(&mut admin)
                    .await
                    .expect("drop schema");
                for suffix in ["app", "auditor", "migrator"] {
                    let role = format!("{schema}_{suffix}");
                    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
                        .bind(&role)
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
            });
        })
        .join();
        if done.is_err() && !std::thread::panicking() {
            panic!("cleaning up schema {} failed", self.schema);
        }
    }
}

/// Writes a secret to a 0600 file and returns the `file:` reference to it.
pub(crate) fn secret_file(dirs: &Dirs, name: &str, text: &str) -> String {
    let path = dirs.root.path().join(name);
    std::fs::write(&path, format!("{text}\n")).expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    format!("file:{}", path.display())
}

/// Starts `serve` expecting a refusal: its exit code and stderr.
fn refused_start(dirs: &Dirs, config_text: &str) -> (i32, String) {
    let config = dirs.config(config_text);
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dirs.data())
        .arg("--key-dir")
        .arg(dirs.keys())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut stderr = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr).expect("read");
            return (status.code().unwrap_or(-1), stderr);
        }
        if started.elapsed() > REFUSAL_WAIT {
            let _ = child.kill();
            panic!("serve did not refuse within {REFUSAL_WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A schema provisioned by `rampart db provision`, dropped with its roles when this is dropped.
pub(crate) struct Provisioned {
    pub schema: String,
    url: String,
    passwords: PathBuf,
    _cleanup: Cleanup,
}

impl Provisioned {
    /// The URL of one of the schema's roles (`app`, `migrator`, `auditor`), with its password.
    pub fn role_url(&self, suffix: &str) -> String {
        let role = format!("{}_{suffix}", self.schema);
        let password = std::fs::read_to_string(self.passwords.join(format!("{role}.password"))).expect("password file");
        as_user(&self.url, &role, Some(password.trim()))
    }

    /// The config of a server that runs as the app role and migrates as the migrator.
    pub fn serve_config(&self, dirs: &Dirs) -> String {
        let app = secret_file(dirs, "app-url", &self.role_url("app"));
        let migrator = secret_file(dirs, "migrator-url", &self.role_url("migrator"));
        format!("database_url = \"{app}\"\n[database]\nschema = \"{}\"\nmigrator_url = \"{migrator}\"\n", self.schema)
    }
}

/// Runs `rampart db provision` for a fresh schema on the server at `url`.
pub(crate) fn provision(url: &str, dirs: &Dirs) -> Provisioned {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let schema = format!("rampart_it{:x}", nanos % (1 << 40));
    let cleanup = Cleanup { url: url.to_owned(), schema: schema.clone() };
    let passwords: PathBuf = dirs.root.path().join("passwords");
    let admin_ref = secret_file(dirs, "admin-url", url);
    let provision = Command::new(BIN)
        .args(["db", "provision", "--admin-url", &admin_ref, "--schema", &schema, "--password-dir"])
        .arg(&passwords)
        .output()
        .expect("provision");
    assert!(provision.status.success(), "{}", String::from_utf8_lossy(&provision.stderr));
    assert!(provision.stdout.is_empty(), "with --password-dir nothing is printed");
    Provisioned { schema, url: url.to_owned(), passwords, _cleanup: cleanup }
}

async fn audit_actions(url: &str, schema: &str) -> Vec<String> {
    let mut admin = PgConnection::connect(url).await.expect("connect");
    let actions = sqlx::query_scalar(&format!("SELECT action FROM \"{schema}\".audit_log ORDER BY seq"))
        .fetch_all(&mut admin)
        .await
        .expect("audit log");
    admin.close().await.expect("close");
    actions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_only_as_the_least_privileged_app_role() {
    let Some(url) = server_url() else { return };
    let dirs = Arc::new(Dirs::new());
    let provisioned = provision(&url, &dirs);
    let (schema, role_url) = (provisioned.schema.clone(), |suffix: &str| provisioned.role_url(suffix));
    let section = format!("[database]\nschema = \"{schema}\"\n");

    // A superuser, and the tables' owner: refused with the reasons, before anything is served.
    for (name, role, reason) in [("super-url", url.clone(), "superuser"), ("owner-url", role_url("migrator"), "owns")] {
        let reference = secret_file(&dirs, name, &role);
        let (code, stderr) = refused_start(&dirs, &format!("database_url = \"{reference}\"\n{section}"));
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains("refusing to serve") && stderr.contains(reason), "{stderr}");
        assert!(!stderr.contains(role.as_str()), "the URL is not in the refusal: {stderr}");
    }

    // The app role serves; accounts live in PostgreSQL.
    let config = provisioned.serve_config(&dirs);
    let server = Server::start_with(Arc::clone(&dirs), &config, &[]);
    let token = server.invite("member");
    server.enroll_with(&token, "member").await;
    let dirs = server.stop();
    let actions = audit_actions(&url, &schema).await;
    assert!(actions.iter().any(|a| a == "server.start"), "{actions:?}");
    assert!(!actions.iter().any(|a| a == "db.privilege_check_overridden"), "{actions:?}");

    // A privileged role only with the override, which is on the record.
    let superuser = secret_file(&dirs, "super-url-2", &url);
    let config = format!("database_url = \"{superuser}\"\n{section}allow_privileged_role = true\n");
    let server = Server::start_with(Arc::clone(&dirs), &config, &[]);
    assert!(server.log_text().contains("OVER-PRIVILEGED"), "the override is logged as a warning");
    server.stop();
    let actions = audit_actions(&url, &schema).await;
    assert!(actions.iter().any(|a| a == "db.privilege_check_overridden"), "{actions:?}");
}

/// Issue 16 item 13 on PostgreSQL: `rampart audit` runs no migration, even with a migrator's URL
/// at hand, so a schema without an audit log is an error naming it and stays absent; a real one
/// is verified and read by the auditor role, which may only read it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_commands_never_migrate_and_read_as_the_auditor() {
    let Some(url) = server_url() else { return };
    let dirs = Arc::new(Dirs::new());
    let provisioned = provision(&url, &dirs);
    let missing = format!("{}_missing", provisioned.schema);
    let _cleanup = Cleanup { url: url.clone(), schema: missing.clone() };
    let superuser = secret_file(&dirs, "super-url", &url);
    let config = dirs.config(&format!(
        "database_url = \"{superuser}\"\n[database]\nschema = \"{missing}\"\nmigrator_url = \"{superuser}\"\n"
    ));
    for words in [["audit", "verify"], ["audit", "export"], ["audit", "tail"]] {
        let output = crate::support::deployment_command(&dirs, &config, &words).output().expect("run");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{words:?}: {stderr}");
        assert!(stderr.contains(&format!("no audit log in schema {missing}")), "{words:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{words:?}: {stderr}");
    }
    let mut admin = PgConnection::connect(&url).await.expect("connect");
    let made: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
        .bind(&missing)
        .fetch_one(&mut admin)
        .await
        .expect("schema");
    admin.close().await.expect("close");
    assert!(!made, "no migration ran: schema {missing} was not created");

    let server = Server::start_with(Arc::clone(&dirs), &provisioned.serve_config(&dirs), &[]);
    let dirs = server.stop();
    let auditor = secret_file(&dirs, "auditor-url", &provisioned.role_url("auditor"));
    let schema = &provisioned.schema;
    let config = dirs.config(&format!("database_url = \"{auditor}\"\n[database]\nschema = \"{schema}\"\n"));
    let verified = crate::support::deployment_command(&dirs, &config, &["audit", "verify"]).output().expect("run");
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stderr));
    assert!(String::from_utf8_lossy(&verified.stdout).starts_with("audit log intact: "));
    let tail = crate::support::deployment_command(&dirs, &config, &["audit", "tail", "-n", "1"]).output().expect("run");
    assert!(tail.status.success(), "{}", String::from_utf8_lossy(&tail.stderr));
    assert_eq!(String::from_utf8_lossy(&tail.stdout).lines().count(), 1);
}
