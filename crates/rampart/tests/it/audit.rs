//! The audit log's hash chain from outside: tampering with the audit file directly (change a
//! field, delete a record, insert one, swap two, cut the tail) is named by `rampart audit verify`
//! and by `GET /api/v1/admin/audit/verify` at the right `seq`; an untouched log verifies; records
//! export as JSON lines and RFC 5424 syslog.

use serde_json::{json, Value};

use crate::support::{Server, PASSWORD};

async fn some_records(server: &Server) -> crate::support::User {
    let admin = server.user("admin").await;
    for _ in 0..3 {
        let response = server
            .client()
            .post(server.url("/api/v1/auth/login"))
            .json(&json!({ "username": admin.username, "password": "not the password at all", "mode": "token" }))
            .send()
            .await
            .expect("login");
        assert_eq!(response.status(), 401);
    }
    server.login_token(&admin.username, PASSWORD).await;
    admin
}

async fn api_verify(server: &Server, admin: &crate::support::User) -> Value {
    let response = server.get_json(admin, "/api/v1/admin/audit/verify").await;
    assert_eq!(response.status(), 200);
    response.json().await.expect("json")
}

async fn tamper(db: &std::path::Path, statements: &[&str]) {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display())).await.expect("open audit db");
    for statement in statements {
        sqlx::query(statement).execute(&pool).await.expect("tamper");
    }
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_the_first_bad_seq_for_each_kind_of_tampering() {
    let server = Server::start();
    let admin = some_records(&server).await;
    let verdict = api_verify(&server, &admin).await;
    assert_eq!(verdict["ok"], true, "{verdict}");
    assert!(verdict["checked"].as_u64().expect("checked") >= 6, "{verdict}");
    assert!(verdict.get("first_bad_seq").is_none());

    // Stopping signs the head, so the offline check covers every record.
    let config = server.config.clone();
    let dirs = server.stop();
    let verify = || crate::support::deployment_command(&dirs, &config, &["audit", "verify"]).output().expect("run");
    let clean = verify();
    assert!(clean.status.success(), "{}", String::from_utf8_lossy(&clean.stderr));
    assert!(String::from_utf8_lossy(&clean.stdout).contains("audit log intact"));

    let db = dirs.audit().join("audit.db");
    // Verification opens the log read-only, so it no longer folds the WAL into the file as it
    // closes: done here, so that the copy below is the whole log.
    tamper(&db, &["PRAGMA wal_checkpoint(TRUNCATE)"]).await;
    let pristine = std::fs::read(&db).expect("read");
    assert!(
        !dirs.audit().join("audit.db-wal").exists()
            || std::fs::metadata(dirs.audit().join("audit.db-wal")).expect("wal").len() == 0
    );
    let head: i64 = {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display())).await.expect("open");
        let head = sqlx::query_scalar("SELECT MAX(seq) FROM audit_log").fetch_one(&pool).await.expect("max");
        pool.close().await;
        head
    };
    let insert = format!(
        "INSERT INTO audit_log (seq, at, actor, action, outcome, details) VALUES ({}, 0, 'ghost', 'auth.login', 'success', '{{}}')",
        head + 1
    );
    let cases: Vec<(&str, Vec<String>, i64)> = vec![
        ("change a field", vec!["UPDATE audit_log SET actor = 'mallory' WHERE seq = 3".to_owned()], 3),
        ("delete a record", vec!["DELETE FROM audit_log WHERE seq = 4".to_owned()], 4),
        ("insert one", vec![insert], head + 1),
        (
            "swap two",
            vec![
                "UPDATE audit_log SET seq = -2 WHERE seq = 2".to_owned(),
                "UPDATE audit_log SET seq = 2 WHERE seq = 5".to_owned(),
                "UPDATE audit_log SET seq = 5 WHERE seq = -2".to_owned(),
            ],
            2,
        ),
        ("cut the tail", vec!["DELETE FROM audit_log WHERE seq > 5".to_owned()], 6),
    ];
    for (what, statements, bad_seq) in cases {
        std::fs::write(&db, &pristine).expect("restore");
        let statements: Vec<&str> = statements.iter().map(String::as_str).collect();
        tamper(&db, &statements).await;
        let output = verify();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{what}: {stderr}");
        assert!(stderr.contains(&format!("first bad record seq {bad_seq}:")), "{what}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{what}: {stderr}");
    }
    std::fs::write(&db, &pristine).expect("restore");
    assert!(verify().status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_server_catches_a_changed_record_and_a_cut_tail() {
    let server = Server::start();
    let admin = some_records(&server).await;
    let db = server.dirs.audit().join("audit.db");
    tamper(&db, &["UPDATE audit_log SET actor = 'mallory' WHERE seq = 3"]).await;
    let verdict = api_verify(&server, &admin).await;
    assert_eq!(verdict["ok"], false, "{verdict}");
    assert_eq!(verdict["first_bad_seq"], 3, "{verdict}");
    assert_eq!(verdict["problem"], "hash_mismatch");

    let server_again = Server::start();
    let admin_again = some_records(&server_again).await;
    let first = api_verify(&server_again, &admin_again).await;
    let head = first["checked"].as_i64().expect("checked") + 1; // the verify itself was recorded
    tamper(&server_again.dirs.audit().join("audit.db"), &[&format!("DELETE FROM audit_log WHERE seq > {}", head - 2)])
        .await;
    let verdict = api_verify(&server_again, &admin_again).await;
    assert_eq!(verdict["ok"], false, "{verdict}");
    assert_eq!(verdict["problem"], "truncated", "{verdict}");
    assert_eq!(verdict["first_bad_seq"], head - 1, "{verdict}");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_export_as_json_lines_and_syslog_and_the_export_is_audited() {
    let server = Server::start();
    some_records(&server).await;
    let jsonl = server.rampart(&["audit", "export", "--format", "jsonl"]);
    assert!(jsonl.status.success(), "{}", String::from_utf8_lossy(&jsonl.stderr));
    let lines: Vec<Value> =
        String::from_utf8_lossy(&jsonl.stdout).lines().map(|l| serde_json::from_str(l).expect("json line")).collect();
    assert!(lines.iter().any(|l| l["action"] == "auth.login" && l["outcome"] == "failure"));
    assert!(lines.windows(2).all(|w| w[0]["seq"].as_i64() < w[1]["seq"].as_i64()));
    let syslog = server.rampart(&["audit", "export", "--format", "syslog", "--since", "2020-01-01"]);
    let text = String::from_utf8_lossy(&syslog.stdout).to_string();
    assert!(text.lines().all(|l| l.starts_with("<110>1 ") || l.starts_with("<108>1 ")), "{text}");
    assert!(text.contains("[rampart@32473 seq=\"1\""), "{text}");
    let tail = server.rampart(&["audit", "tail", "-n", "1"]);
    let last: Value = serde_json::from_str(String::from_utf8_lossy(&tail.stdout).trim()).expect("one line");
    assert_eq!(last["action"], "audit.export", "the exports were recorded");
    let bad = server.rampart(&["audit", "export", "--since", "yesterday"]);
    assert_eq!(bad.status.code(), Some(1));
}

/// `rampart audit <words>` run in `cwd`, with nothing else given.
fn audit_in(cwd: &std::path::Path, words: &[&str]) -> std::process::Output {
    std::process::Command::new(crate::support::BIN).arg("audit").args(words).current_dir(cwd).output().expect("run")
}

fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Issue 16 item 13: run where no audit log is, verify, export and tail each fail (exit 1, one
/// line naming the path they looked at) and create nothing: before, verify made an empty store
/// and vouched for it ("audit log intact: 0 records", exit 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_commands_where_no_log_is_fail_naming_the_path_and_create_nothing() {
    let empty = tempfile::tempdir().expect("dir");
    let missing = empty.path().join("nowhere");
    let missing_flag = missing.to_str().expect("utf8");
    for words in [
        vec!["verify"],
        vec!["export"],
        vec!["export", "--format", "syslog"],
        vec!["tail"],
        vec!["tail", "-n", "5"],
        vec!["verify", "--audit-dir", missing_flag],
        vec!["--audit-dir", missing_flag, "export"],
        vec!["tail", "--audit-dir", missing_flag],
    ] {
        let output = audit_in(empty.path(), &words);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{words:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{words:?}: one line: {stderr}");
        let looked_at = if words.contains(&"--audit-dir") {
            missing.join("audit.db")
        } else {
            empty.path().canonicalize().expect("canonical").join("rampart-audit").join("audit.db")
        };
        assert!(stderr.contains(&looked_at.display().to_string()), "{words:?} names {}: {stderr}", looked_at.display());
        assert!(String::from_utf8_lossy(&output.stdout).is_empty(), "{words:?}: nothing vouched for");
        assert_eq!(entries(empty.path()), Vec::<String>::new(), "{words:?} created nothing");
    }
}

/// Issue 16 item 13: `--audit-dir` names the log for every subcommand, before or after it, from
/// anywhere; and a signing key beside an empty log is a failure, not "intact: 0 records".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_dir_serves_every_subcommand_and_an_empty_log_beside_a_key_fails() {
    let server = Server::start();
    some_records(&server).await;
    let dirs = server.stop();
    let elsewhere = tempfile::tempdir().expect("dir");
    let audit_dir = dirs.audit();
    let audit_dir = audit_dir.to_str().expect("utf8");
    let keys = dirs.keys();
    let keys = keys.to_str().expect("utf8");
    let verified = audit_in(elsewhere.path(), &["verify", "--audit-dir", audit_dir, "--key-dir", keys]);
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stderr));
    assert!(String::from_utf8_lossy(&verified.stdout).starts_with("audit log intact: "));
    let exported = audit_in(elsewhere.path(), &["--audit-dir", audit_dir, "export"]);
    assert!(exported.status.success(), "{}", String::from_utf8_lossy(&exported.stderr));
    assert!(String::from_utf8_lossy(&exported.stdout).lines().count() >= 5);
    let tail = audit_in(elsewhere.path(), &["tail", "-n", "1", "--audit-dir", audit_dir]);
    assert!(tail.status.success(), "{}", String::from_utf8_lossy(&tail.stderr));
    let last: Value = serde_json::from_str(String::from_utf8_lossy(&tail.stdout).trim()).expect("one line");
    assert_eq!(last["action"], "audit.export", "the export was recorded in the log it named");
    // Verifying needs the key that signed the checkpoints: without it, a failure naming where it
    // was looked for, and no key made there.
    let keyless = audit_in(elsewhere.path(), &["verify", "--audit-dir", audit_dir]);
    let stderr = String::from_utf8_lossy(&keyless.stderr);
    assert_eq!(keyless.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("audit-signing.key"), "{stderr}");
    assert_eq!(entries(elsewhere.path()), Vec::<String>::new(), "nothing created where it ran");
    // Every record and checkpoint gone, the key still there: not a pass.
    tamper(&dirs.audit().join("audit.db"), &["DELETE FROM audit_log", "DELETE FROM audit_checkpoints"]).await;
    let emptied = audit_in(elsewhere.path(), &["verify", "--audit-dir", audit_dir, "--key-dir", keys]);
    let stderr = String::from_utf8_lossy(&emptied.stderr);
    assert_eq!(emptied.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("empty") && stderr.contains("signing key"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(String::from_utf8_lossy(&emptied.stdout).is_empty());
}
