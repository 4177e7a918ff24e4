//! Encryption at rest through the real server: message text never reaches a byte of `data_dir`;
//! a ciphertext moved to another row answers with an integrity error while the rest loads; the
//! KEK rotates while clients send, losing nothing and retiring the old KEK; a missing, wrong or
//! exposed KEK, and a literal secret in the config, stop the server with the reason.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{deployment_command, unique, Dirs, Server};

const SENTINEL: &str = "QUOKKA-SENTINEL-5d1e77";

fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if std::fs::read(&path).expect("read").windows(needle.len()).any(|w| w == needle) {
            found.push(path);
        }
    }
    found
}

async fn history(server: &Server, user: &crate::support::User, channel: &str) -> Vec<Value> {
    let response = server.get_json(user, &format!("/api/v1/channels/{channel}/messages?after_seq=0&limit=200")).await;
    assert_eq!(response.status(), 200);
    let page: Value = response.json().await.expect("json");
    page["messages"].as_array().expect("messages").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_text_never_reaches_any_file_of_the_data_directory() {
    let server = Server::start();
    let alice = server.user("member").await;
    let channel = server.channel(&alice, "private").await;
    let top = server.say(&alice, &channel, &format!("top {SENTINEL}")).await;
    let reply = server
        .post_json(
            &alice,
            &format!("/api/v1/channels/{channel}/messages"),
            json!({ "body": format!("reply {SENTINEL}"), "thread_id": top["id"] }),
        )
        .await;
    assert_eq!(reply.status(), 201);
    let plain = server.say(&alice, &channel, "nothing to see").await;
    let edit = server
        .client()
        .patch(server.url(&format!("/api/v1/messages/{}", plain["id"].as_str().expect("id"))))
        .headers(alice.bearer())
        .json(&json!({ "body": format!("edited {SENTINEL}") }))
        .send()
        .await
        .expect("edit");
    assert_eq!(edit.status(), 200);
    let texts: Vec<_> = history(&server, &alice, &channel).await.iter().map(|m| m["body"].clone()).collect();
    assert!(texts.contains(&json!(format!("edited {SENTINEL}"))), "{texts:?}");

    // Let the background checkpoint write the WAL into the main file, then look at every byte
    // with the server running and again after it stopped.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let data = server.dirs.data();
    assert_eq!(files_containing(&data, SENTINEL.as_bytes()), Vec::<PathBuf>::new(), "while running");
    let dirs = server.stop();
    assert_eq!(files_containing(&dirs.data(), SENTINEL.as_bytes()), Vec::<PathBuf>::new(), "after stop");
    // The audit log, in its own directory, holds no message text either.
    assert_eq!(files_containing(&dirs.audit(), SENTINEL.as_bytes()), Vec::<PathBuf>::new(), "audit");
    // Nor do the search index's terms appear: they are stored only as keyed hashes.
    for term in ["quokka", "5d1e77"] {
        assert_eq!(files_containing(&dirs.data(), term.as_bytes()), Vec::<PathBuf>::new(), "indexed term {term}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ciphertext_moved_to_another_row_answers_with_an_integrity_error_and_the_rest_loads() {
    let server = Server::start();
    let alice = server.user("member").await;
    let channel = server.channel(&alice, "public").await;
    let first = server.say(&alice, &channel, "first").await;
    let second = server.say(&alice, &channel, "second").await;
    server.say(&alice, &channel, "third").await;

    let db = server.dirs.data().join("rampart.db");
    let raw = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display())).await.expect("open db");
    sqlx::query("UPDATE messages SET body = (SELECT body FROM messages WHERE id = ?1) WHERE id = ?2")
        .bind(first["id"].as_str())
        .bind(second["id"].as_str())
        .execute(&raw)
        .await
        .expect("move ciphertext");
    raw.close().await;

    let messages = history(&server, &alice, &channel).await;
    let texts: Vec<_> =
        messages.iter().filter(|m| m["sender_id"] == json!(alice.id)).map(|m| m["body"].clone()).collect();
    assert_eq!(texts, [json!("first"), Value::Null, json!("third")]);
    let moved = messages.iter().find(|m| m["id"] == second["id"]).expect("listed");
    assert_eq!(moved["error"]["code"], "integrity_error");
    assert_eq!(moved["deleted"], false);
    assert!(messages.iter().filter(|m| m["id"] != second["id"]).all(|m| m.get("error").is_none()));
    assert!(server.log_shows("failed its integrity check", Duration::from_secs(5)).await, "{}", server.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kek_rotates_while_clients_send_losing_nothing_and_retiring_the_old_kek() {
    // A send rate limit high enough for a steady stream from one user.
    let limits = "[messages]\nsend_rate_per_sec = 1000\nsend_burst = 1000\n";
    let server = Arc::new(Server::start_with(Arc::new(Dirs::new()), limits, &[]));
    let alice = server.user("member").await;
    let channel = server.channel(&alice, "public").await;
    server.say(&alice, &channel, "before the rotation").await;
    assert!(server.dirs.keys().join("kek-1.key").exists());

    let progress = Arc::new(AtomicUsize::new(0));
    let sender = {
        let (server, alice, channel, progress) =
            (Arc::clone(&server), alice.clone(), channel.clone(), Arc::clone(&progress));
        tokio::spawn(async move {
            let mut sent = Vec::new();
            for i in 0..150 {
                let text = format!("during {i}");
                let response = server
                    .post_json(
                        &alice,
                        &format!("/api/v1/channels/{channel}/messages"),
                        json!({ "body": text, "client_id": format!("c{i}") }),
                    )
                    .await;
                assert_eq!(response.status(), 201, "send {i}");
                sent.push(text);
                progress.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            sent
        })
    };
    while progress.load(Ordering::SeqCst) < 10 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let rotate = server.rampart(&["keys", "rotate-kek"]);
    let sent_by_then = progress.load(Ordering::SeqCst);
    assert!(sent_by_then < 150, "the rotation ran while the client was still sending ({sent_by_then} of 150 sent)");
    assert!(rotate.status.success(), "{}", String::from_utf8_lossy(&rotate.stderr));
    let said = String::from_utf8_lossy(&rotate.stdout).to_string();
    assert!(said.contains("version 1 -> 2") && said.contains("KEK version 1 retired"), "{said}");
    // A second channel started mid-rotation gets a data key under the new KEK.
    let late = server.channel(&alice, "public").await;
    server.say(&alice, &late, "a new channel after the rotation").await;
    let sent = sender.await.expect("sender");

    assert!(!server.dirs.keys().join("kek-1.key").exists(), "the retired KEK's file is gone");
    let status = server.rampart(&["keys", "status"]);
    let status = String::from_utf8_lossy(&status.stdout).to_string();
    assert!(status.contains("active KEK: version 2"), "{status}");
    assert!(status.contains("version 1: retired, wraps 0 data keys"), "{status}");

    // After a restart (nothing cached, only KEK 2 on disk) every message still opens, once each.
    let dirs = Arc::into_inner(server).expect("sole owner").stop();
    let server = Server::start_with(dirs, "", &[]);
    let alice_again =
        crate::support::User { token: server.login_token(&alice.username, crate::support::PASSWORD).await, ..alice };
    let bodies: Vec<String> = history(&server, &alice_again, &channel)
        .await
        .iter()
        .filter_map(|m| m["body"].as_str().map(str::to_owned))
        .filter(|b| b.starts_with("during") || b.starts_with("before"))
        .collect();
    let mut expected = vec!["before the rotation".to_owned()];
    expected.extend(sent);
    assert_eq!(bodies, expected);
    assert!(history(&server, &alice_again, &channel).await.iter().all(|m| m.get("error").is_none()));
    let audit = std::fs::read(server.dirs.audit().join("audit.db")).expect("audit db");
    assert!(audit.windows(15).any(|w| w == b"keys.kek.rotate"), "the rotation is audited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_dek_and_reencrypt_keep_every_message_readable() {
    let server = Server::start();
    let alice = server.user("member").await;
    let channel = server.channel(&alice, "public").await;
    for i in 0..5 {
        server.say(&alice, &channel, &format!("old epoch {i}")).await;
    }
    let rotate = server.rampart(&["keys", "rotate-dek", "--channel", &channel]);
    assert!(rotate.status.success(), "{}", String::from_utf8_lossy(&rotate.stderr));
    assert!(String::from_utf8_lossy(&rotate.stdout).contains("for 1 channels"));
    let missing = server.rampart(&["keys", "rotate-dek", "--channel", &unique("nochannel")]);
    assert_eq!(missing.status.code(), Some(1));
    let status = String::from_utf8_lossy(&server.rampart(&["keys", "status"]).stdout).to_string();
    assert!(status.contains("messages sealed under an older epoch: 5"), "{status}");

    let reencrypt = server.rampart(&["keys", "reencrypt"]);
    assert!(reencrypt.status.success(), "{}", String::from_utf8_lossy(&reencrypt.stderr));
    assert!(String::from_utf8_lossy(&reencrypt.stdout).contains("re-sealed 5 messages; 0 remain"));
    let bodies: Vec<_> =
        history(&server, &alice, &channel).await.iter().filter_map(|m| m["body"].as_str().map(str::to_owned)).collect();
    assert_eq!(bodies, (0..5).map(|i| format!("old epoch {i}")).collect::<Vec<_>>());
}

fn serve(dirs: &Dirs, config: &Path) -> (i32, String) {
    let output = deployment_command(dirs, config, &["serve", "--listen", "127.0.0.1:0"]).output().expect("run");
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stderr).trim().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_wrong_or_exposed_kek_stops_the_server_with_the_reason() {
    let server = Server::start();
    let config = server.config.clone();
    let dirs = server.stop();
    let key_file = dirs.keys().join("kek-1.key");
    let original = std::fs::read(&key_file).expect("key");

    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let (code, stderr) = serve(&dirs, &config);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("chmod 600") && stderr.lines().count() == 1, "{stderr}");

    std::fs::remove_file(&key_file).expect("remove");
    let (code, stderr) = serve(&dirs, &config);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("KEK version 1 is missing") && stderr.lines().count() == 1, "{stderr}");

    // Another deployment's key: the check value tells, before anything is decrypted.
    let other = Dirs::new();
    let other_config = other.config("");
    let (_, _) = {
        let mut child = deployment_command(&other, &other_config, &["serve", "--listen", "127.0.0.1:0"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !other.keys().join("kek-1.key").exists() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        (0, ())
    };
    std::fs::copy(other.keys().join("kek-1.key"), &key_file).expect("copy");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let (code, stderr) = serve(&dirs, &config);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("does not match this database") && stderr.lines().count() == 1, "{stderr}");

    // The right key again: it starts.
    std::fs::write(&key_file, original).expect("restore");
    Server::start_with(dirs, "", &[]).stop();
}

#[test]
fn a_literal_secret_in_the_config_is_refused_with_the_fix() {
    let dirs = Dirs::new();
    let config = dirs.config("database_url = \"postgres://rampart:hunter2-secret@db.internal/rampart\"\n");
    let (code, stderr) = serve(&dirs, &config);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("database_url") && stderr.contains("file:"), "{stderr}");
    assert!(!stderr.contains("hunter2-secret"), "the secret is not repeated: {stderr}");
    assert_eq!(stderr.lines().count(), 1);
}

/// Texts found by `GET /api/v1/search?q=…` for `user`.
async fn found(server: &Server, user: &crate::support::User, word: &str) -> Vec<String> {
    let response = server.get_json(user, &format!("/api/v1/search?q={word}")).await;
    assert_eq!(response.status(), 200);
    let page: Value = response.json().await.expect("json");
    page["results"].as_array().expect("results").iter().filter_map(|m| m["body"].as_str().map(str::to_owned)).collect()
}

/// Counts rows of `sql` over the current database with the pre-re-key copy attached as `old`.
async fn count_against_old_copy(current: &Path, old: &Path, sql: &str) -> i64 {
    use sqlx::Connection;
    let mut conn =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=ro", current.display())).await.expect("db");
    sqlx::query("ATTACH DATABASE ? AS old").bind(old.display().to_string()).execute(&mut conn).await.expect("attach");
    sqlx::query_scalar(sql).fetch_one(&mut conn).await.expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rekey_cut_short_then_finished_leaves_an_old_copy_and_the_old_kek_opening_nothing_current() {
    let server = Server::start();
    let alice = server.user("member").await;
    let channel = server.channel(&alice, "public").await;
    let other = server.channel(&alice, "private").await;
    for i in 0..6 {
        server.say(&alice, &channel, &format!("pelican {i}")).await;
    }
    server.say(&alice, &other, "cormorant in the private channel").await;
    assert_eq!(found(&server, &alice, "cormorant").await.len(), 1);

    // What an attacker took before the re-key: a copy of the database and the KEK file.
    let stolen = tempfile::tempdir().expect("temp dir");
    let checkpoint = server.rampart(&["keys", "status"]);
    assert!(checkpoint.status.success());
    for name in ["rampart.db", "rampart.db-wal"] {
        let from = server.dirs.data().join(name);
        if from.exists() {
            std::fs::copy(&from, stolen.path().join(name)).expect("copy the database");
        }
    }
    std::fs::copy(server.dirs.keys().join("kek-1.key"), stolen.path().join("kek-1.key")).expect("copy the KEK");

    // A re-key killed half way (while it waits for servers to take up the new epochs)...
    let mut first = deployment_command(&server.dirs, &server.config, &["keys", "rotate-kek", "--rekey"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the re-key");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !server.dirs.keys().join("kek-2.key").exists() {
        assert!(std::time::Instant::now() < deadline, "the re-key made its new KEK");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    first.kill().expect("kill");
    first.wait().expect("reap");
    let status = String::from_utf8_lossy(&server.rampart(&["keys", "status"]).stdout).to_string();
    assert!(status.contains("version 1: retiring"), "cut short before the old KEK went: {status}");
    // ...while the server keeps serving...
    server.say(&alice, &channel, "pelican during the re-key").await;
    // ...is finished by running it again.
    let again = server.rampart(&["keys", "rotate-kek", "--rekey"]);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    let said = String::from_utf8_lossy(&again.stdout).to_string();
    assert!(said.contains("KEK version 1 retired") && said.contains("KEK version 2 retired"), "{said}");
    assert!(again.stderr.is_empty() || !String::from_utf8_lossy(&again.stderr).contains('\r'), "no bar off a terminal");

    // Every message and search still work.
    let bodies: Vec<String> =
        history(&server, &alice, &channel).await.iter().filter_map(|m| m["body"].as_str().map(str::to_owned)).collect();
    let mut expected: Vec<String> = (0..6).map(|i| format!("pelican {i}")).collect();
    expected.push("pelican during the re-key".to_owned());
    assert_eq!(bodies, expected);
    assert_eq!(found(&server, &alice, "pelican").await.len(), 7);
    assert_eq!(found(&server, &alice, "cormorant").await, ["cormorant in the private channel"]);

    // The old KEK unwraps only the old copy's keys, and none of them seals anything current.
    assert!(!server.dirs.keys().join("kek-1.key").exists() && !server.dirs.keys().join("kek-2.key").exists());
    let current = server.dirs.data().join("rampart.db");
    let old = stolen.path().join("rampart.db");
    let checks = [
        ("messages sealed under a data key of the old copy", "SELECT COUNT(*) FROM messages m JOIN old.data_keys d ON d.channel_id = m.channel_id AND d.epoch = m.key_epoch"),
        ("data keys of the old copy still present", "SELECT COUNT(*) FROM data_keys k JOIN old.data_keys d ON d.channel_id = k.channel_id AND d.epoch = k.epoch"),
        ("search keys of the old copy still present", "SELECT COUNT(*) FROM search_keys k JOIN old.search_keys s ON s.channel_id = k.channel_id AND s.version = k.version"),
        ("keys wrapped by a KEK other than the active one", "SELECT (SELECT COUNT(*) FROM data_keys WHERE kek_version <> 3) + (SELECT COUNT(*) FROM search_keys WHERE kek_version <> 3)"),
        ("old data key material left in any row", "SELECT COUNT(*) FROM data_keys k JOIN old.data_keys d ON d.wrapped = k.wrapped"),
    ];
    for (what, sql) in checks {
        assert_eq!(count_against_old_copy(&current, &old, sql).await, 0, "{what}");
    }
    assert!(
        count_against_old_copy(&current, &old, "SELECT COUNT(*) FROM old.data_keys").await > 0,
        "the check sees the copy"
    );
    // The record may still be in the audit log's WAL.
    let audit: Vec<u8> = ["audit.db", "audit.db-wal"]
        .iter()
        .flat_map(|name| std::fs::read(server.dirs.audit().join(name)).unwrap_or_default())
        .collect();
    assert!(audit.windows(10).any(|w| w == b"keys.rekey"), "the re-key is audited");
}
