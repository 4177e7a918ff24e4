//! Runs the storage conformance suite against PostgreSQL, each test in a fresh schema of its own
//! (`rampart_test_<random>`, dropped at the end, pass or fail) so runs never collide. The server is
//! named by `RAMPART_TEST_POSTGRES_URL`. Unset, the tests skip with a note — except under
//! `CI=true`, where a missing variable or an unreachable server fails them: CI must not pass by
//! testing nothing.

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sqlx::{Connection, PgConnection};

use rampart_core::channel::{ChannelKind, ChannelRole};
use rampart_core::validate::{ChannelName, MessageBody, Topic};
use rampart_core::{ChannelId, MessageId, Role, Timestamp};
use rampart_store::conformance::make_user;
use rampart_store::{
    conformance, conformance_keys, postgres, ChannelStore, CreateChannelOutcome, EpochPolicy, KeyConfig, NewChannel,
    NewMessage, PgOptions, PgStore, PgTls, PostOutcome, UserRecord,
};

const URL_VARIABLE: &str = "RAMPART_TEST_POSTGRES_URL";

/// The server's URL, or `None` to skip (never under CI).
fn server_url() -> Option<String> {
    match std::env::var(URL_VARIABLE) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{URL_VARIABLE} is not set, and CI=true: the PostgreSQL conformance suite must run in CI")
        }
        _ => {
            eprintln!("note: {URL_VARIABLE} is not set; skipping the PostgreSQL conformance suite");
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
    format!("rampart_test_{:x}_{:x}", std::process::id(), nanos)
}

/// A schema of this test's own on the server; dropped by `drop_schema`.
struct TestSchema {
    url: String,
    options: PgOptions,
}

impl TestSchema {
    async fn create(url: &str) -> Self {
        let options = PgOptions::from_url(url).expect("URL").with_schema(&fresh_schema_name()).expect("schema");
        // Connecting first makes an unreachable server this line's failure, with the reason.
        let admin = PgConnection::connect(url).await.expect("connect to the PostgreSQL test server");
        admin.close().await.expect("close");
        postgres::migrate(&options).await.expect("migrate a fresh schema");
        TestSchema { url: url.to_owned(), options }
    }

    async fn drop_schema(&self) {
        let mut admin = PgConnection::connect(&self.url).await.expect("connect");
        let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.options.schema());
        sqlx::query(&sql).execute(&mut admin).await.expect("drop the test schema");
        admin.close().await.expect("close");
    }
}

async fn open(schema: &TestSchema, root: &Path, epoch: EpochPolicy) -> PgStore {
    let keys = KeyConfig { key_dir: private_dir(root.join("keys")), epoch };
    PgStore::open(&schema.options, private_dir(root.join("blobs")), &keys).await.expect("open")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

/// Runs `check` against a fresh schema and drops the schema afterwards, also when `check` panics
/// (the panic is then raised again). The check runs on a thread and runtime of its own, so its
/// panic is caught at `join` without the future having to be `Send`.
fn in_fresh_schema<F, Fut>(check: F)
where
    F: FnOnce(Arc<TestSchema>, PathBuf) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let Some(url) = server_url() else { return };
    let main = runtime();
    let schema = Arc::new(main.block_on(TestSchema::create(&url)));
    let root = tempfile::tempdir().expect("temp dir");
    let (for_check, path) = (Arc::clone(&schema), root.path().to_owned());
    let outcome = std::thread::spawn(move || runtime().block_on(check(for_check, path))).join();
    main.block_on(schema.drop_schema());
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn postgres_store_passes_the_conformance_suite() {
    in_fresh_schema(|schema, root| async move {
        let store = open(&schema, &root, EpochPolicy::default()).await;
        conformance::run_all(&store).await;
        store.close().await;
        // Migrating again changes nothing, and a reopened store keeps the data.
        postgres::migrate(&schema.options).await.expect("migrate again");
        let again = open(&schema, &root, EpochPolicy::default()).await;
        conformance::users_round_trip_and_search(&again).await;
        again.close().await;
    });
}

#[test]
fn postgres_store_passes_the_encryption_conformance_checks() {
    in_fresh_schema(|schema, root| async move {
        let epoch = EpochPolicy { messages_max: conformance_keys::EPOCH_MESSAGES_MAX, days_max: 30 };
        let store = open(&schema, &root, epoch).await;
        conformance_keys::run_all(&store).await;
        store.close().await;
        // The retired KEK's file is gone, so the messages read back below open only because every
        // data key was re-wrapped under the new KEK.
        assert!(!root.join("keys").join("kek-1.key").exists(), "the retired KEK's file is deleted");
        let again = open(&schema, &root, epoch).await;
        conformance_keys::run_all(&again).await;
        again.close().await;
    });
}

/// The local server's own certificate (Debian's is a self-signed one for `localhost`), when the
/// test server is this machine's and has TLS on; `None` (with a note) otherwise.
async fn local_server_certificate(url: &str) -> Option<PathBuf> {
    if !url.contains("@127.0.0.1") && !url.contains("@localhost") {
        eprintln!("note: the test server is not on this machine; its certificate is unknown, TLS not tested");
        return None;
    }
    let mut conn = PgConnection::connect(url).await.expect("connect");
    let ssl: String = sqlx::query_scalar("SHOW ssl").fetch_one(&mut conn).await.expect("ssl");
    let file: String = sqlx::query_scalar("SHOW ssl_cert_file").fetch_one(&mut conn).await.expect("file");
    conn.close().await.expect("close");
    let path = PathBuf::from(file);
    if ssl != "on" || !path.is_file() {
        eprintln!("note: the test server has no TLS certificate this test can read; TLS not tested");
        return None;
    }
    Some(path)
}

async fn tls_in_use(options: &PgOptions) -> Result<bool, rampart_store::StoreError> {
    let mut conn = options.connect().await?;
    let ssl: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&mut conn)
        .await
        .expect("pg_stat_ssl");
    conn.close().await.expect("close");
    Ok(ssl)
}

#[test]
fn verify_full_checks_the_servers_certificate_and_name() {
    let Some(url) = server_url() else { return };
    runtime().block_on(async {
        let Some(certificate) = local_server_certificate(&url).await else { return };
        let by_name = url.replace("@127.0.0.1", "@localhost");
        let verified =
            PgOptions::from_url(&by_name).expect("url").with_tls(PgTls::VerifyFull, Some(&certificate)).expect("tls");
        assert!(tls_in_use(&verified).await.expect("verify-full with the server's CA connects"), "over TLS");
        // The same certificate, reached by another name: refused.
        let by_address = url.replace("@localhost", "@127.0.0.1");
        let wrong_name = PgOptions::from_url(&by_address)
            .expect("url")
            .with_tls(PgTls::VerifyFull, Some(&certificate))
            .expect("tls");
        assert!(tls_in_use(&wrong_name).await.is_err(), "a certificate for another name is refused");
        // A CA that did not issue it: refused — but sqlx 0.8 trusts the CA file in addition to the
        // system's roots (not instead, as libpq's sslrootcert does), so this holds only when the
        // system's roots do not already trust the server (here SSL_CERT_DIR may hold its
        // self-signed certificate).
        let system_only = PgOptions::from_url(&by_name).expect("url").with_tls(PgTls::VerifyFull, None).expect("tls");
        if tls_in_use(&system_only).await.is_ok() {
            eprintln!("note: the system's roots trust the server's certificate; the wrong-CA check is skipped");
            return;
        }
        let other_ca = tempfile::NamedTempFile::new().expect("temp file");
        let unrelated = std::fs::read_dir("/etc/ssl/certs")
            .expect("system certificates")
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .find(|path| path.extension().is_some_and(|e| e == "pem") && path != &certificate)
            .expect("another certificate");
        std::fs::copy(&unrelated, other_ca.path()).expect("copy");
        let wrong_ca = PgOptions::from_url(&by_name)
            .expect("url")
            .with_tls(PgTls::VerifyFull, Some(other_ca.path()))
            .expect("tls");
        assert!(tls_in_use(&wrong_ca).await.is_err(), "a server certificate from another CA is refused");
    });
}

/// Posts, edits and joins from one node, each taking the channel's next `seq`.
async fn busy_node(store: &PgStore, channel: &ChannelId, sender: &UserRecord, joiners: &[UserRecord], node: usize) {
    const PER_NODE: usize = 20;
    let at = Timestamp(1_800_000_000_000);
    for i in 0..PER_NODE {
        let id = MessageId::from_generated(format!("msg-{node}-{i}-{}", fresh_schema_name().replace('_', "-")));
        let new = NewMessage {
            id: id.clone(),
            channel_id: channel.clone(),
            sender_id: sender.id.clone(),
            body: MessageBody::parse(&format!("node {node} message {i}")).expect("body"),
            thread_id: None,
            client_id: None,
            created_at: at,
            files: Vec::new(),
        };
        assert!(matches!(store.post_message(&new).await.expect("post"), PostOutcome::Created(_)));
        if i % 4 == 0 {
            let body = MessageBody::parse(&format!("node {node} message {i}, edited")).expect("body");
            store.edit_message(&id, &body, at).await.expect("edit").expect("edited");
        }
        if let Some(joiner) = joiners.get(i) {
            store.add_member(channel, &joiner.id, ChannelRole::Member, at).await.expect("join").expect("joined");
        }
    }
}

#[test]
fn two_nodes_writing_one_channel_keep_seq_dense() {
    in_fresh_schema(|schema, root| async move {
        let node_a = open(&schema, &root.join("a"), EpochPolicy::default()).await;
        let node_b = open(&schema, &root.join("a"), EpochPolicy::default()).await;
        let sender = make_user(&node_a, Role::Member).await;
        let new = NewChannel {
            id: ChannelId::from_generated(format!("chan-{}", fresh_schema_name().replace('_', "-"))),
            kind: ChannelKind::Public,
            name: ChannelName::parse("two-nodes").expect("name"),
            topic: Topic::parse("").expect("topic"),
            created_by: sender.id.clone(),
            created_at: Timestamp(1_800_000_000_000),
        };
        let CreateChannelOutcome::Created(channel, _) = node_a.create_channel(&new).await.expect("create") else {
            panic!("name taken")
        };
        let mut joiners = Vec::new();
        for _ in 0..10 {
            joiners.push(make_user(&node_b, Role::Member).await);
        }
        let (first, second) = joiners.split_at(5);
        tokio::join!(
            busy_node(&node_a, &channel.id, &sender, first, 0),
            busy_node(&node_b, &channel.id, &sender, second, 1),
            busy_node(&node_a, &channel.id, &sender, &[], 2),
            busy_node(&node_b, &channel.id, &sender, &[], 3),
        );
        let events = node_b.events_after(&channel.id, 0, 10_000).await.expect("events");
        let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
        // 1 creation join, 4 × 20 posts, 4 × 5 edits, 10 joins.
        let expected: Vec<i64> = (1..=111).collect();
        assert_eq!(seqs, expected, "seq must be dense with no gap and no duplicate across nodes");
        let last = node_a.channel(&channel.id).await.expect("channel").expect("exists").last_seq;
        assert_eq!(last, 111);
        node_a.close().await;
        node_b.close().await;
    });
}

#[test]
fn search_turned_off_deletes_the_index_and_refuses_searches() {
    in_fresh_schema(|schema, root| async move {
        let on = open(&schema, &root, EpochPolicy::default()).await;
        rampart_store::conformance_search::search_sees_only_the_searchers_channels(&on).await;
        assert!(on.search_index_rows().await.expect("rows") > 0, "messages were indexed");
        on.close().await;
        let keys = KeyConfig { key_dir: private_dir(root.join("keys")), epoch: EpochPolicy::default() };
        let off = PgStore::open_with_search(&schema.options, private_dir(root.join("blobs")), &keys, false)
            .await
            .expect("open with search off");
        assert_eq!(off.search_index_rows().await.expect("rows"), 0, "the index is deleted");
        let user = make_user(&off, Role::Member).await;
        let query = rampart_core::search::SearchQuery::parse("hello").expect("query");
        let refused = off.search(&user.id, &query, None, None, 10).await;
        assert!(matches!(refused, Err(rampart_store::StoreError::SearchDisabled)), "{refused:?}");
        off.close().await;
    });
}

/// Issue 16 item 15: rows from before username skeletons (two of them look-alikes) get theirs at
/// the next start, which the clash does not stop; no new look-alike enrolls afterwards.
#[test]
fn postgres_fills_legacy_username_skeletons_at_start_even_when_two_clash() {
    in_fresh_schema(|schema, root| async move {
        open(&schema, &root, EpochPolicy::default()).await.close().await;
        let mut conn = schema.options.connect().await.expect("connect");
        for (created_at, (id, name)) in (1_i64..).zip(conformance::LEGACY_USERS) {
            sqlx::query("INSERT INTO users (id, username, display_name, password_hash, role, created_at) VALUES ($1, $2, $2, 'x', 'member', $3)")
                .bind(id)
                .bind(name)
                .bind(created_at)
                .execute(&mut conn)
                .await
                .expect("legacy user");
        }
        let store = open(&schema, &root, EpochPolicy::default()).await;
        let skeletons: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT username, username_skeleton FROM users ORDER BY created_at")
                .fetch_all(&mut conn)
                .await
                .expect("read");
        conn.close().await.expect("close");
        let expected = [("admin", Some("adrnln")), ("adrnin", None), ("bob", Some("bob"))];
        assert_eq!(skeletons, expected.map(|(name, skeleton)| (name.to_owned(), skeleton.map(str::to_owned))));
        conformance::legacy_usernames_are_fenced(&store).await;
        store.close().await;
    });
}

/// Direct writes to the test schema, as someone with write access to the database would make them.
struct PgTamper(tokio::sync::Mutex<PgConnection>);

impl PgTamper {
    async fn open(schema: &TestSchema) -> Self {
        PgTamper(tokio::sync::Mutex::new(schema.options.connect().await.expect("raw connection")))
    }

    async fn numbers(&self, sql: &str) -> Vec<i64> {
        sqlx::query_scalar(sql).fetch_all(&mut *self.0.lock().await).await.expect("read")
    }

    async fn execute(&self, sql: &str) {
        sqlx::query(sql).execute(&mut *self.0.lock().await).await.expect("write");
    }
}

#[async_trait::async_trait]
impl rampart_store::conformance_binding::Tamper for PgTamper {
    async fn set_text(&self, message: &MessageId, column: &'static str, value: Option<&str>) {
        let sql = format!("UPDATE messages SET {column} = $1 WHERE id = $2");
        let mut conn = self.0.lock().await;
        sqlx::query(&sql).bind(value).bind(message.as_str()).execute(&mut *conn).await.expect("tamper");
    }

    async fn set_number(&self, message: &MessageId, column: &'static str, value: i64) {
        let sql = format!("UPDATE messages SET {column} = $1 WHERE id = $2");
        let mut conn = self.0.lock().await;
        sqlx::query(&sql).bind(value).bind(message.as_str()).execute(&mut *conn).await.expect("tamper");
    }

    async fn sealed(&self, message: &MessageId) -> (Vec<u8>, i64, i64) {
        let mut conn = self.0.lock().await;
        sqlx::query_as("SELECT body, key_epoch, edit_count FROM messages WHERE id = $1")
            .bind(message.as_str())
            .fetch_one(&mut *conn)
            .await
            .expect("read the row")
    }

    async fn put_sealed(&self, message: &MessageId, body: &[u8], epoch: i64, edit_count: i64) {
        let mut conn = self.0.lock().await;
        sqlx::query("UPDATE messages SET body = $1, key_epoch = $2, edit_count = $3 WHERE id = $4")
            .bind(body)
            .bind(epoch)
            .bind(edit_count)
            .bind(message.as_str())
            .execute(&mut *conn)
            .await
            .expect("tamper");
    }
}

#[test]
fn a_changed_sender_thread_time_or_a_pre_edit_body_fails_the_integrity_check() {
    in_fresh_schema(|schema, root| async move {
        let store = open(&schema, &root, EpochPolicy::default()).await;
        rampart_store::conformance_binding::run_all(&store, &PgTamper::open(&schema).await).await;
        store.close().await;
    });
}

/// Issue 16 item 5: the new-IP check at an administrator's sign-in and the security events list
/// read the audit log through an index, not by scanning every record.
#[test]
fn the_audit_lookups_have_their_indexes() {
    in_fresh_schema(|schema, root| async move {
        let store = open(&schema, &root, EpochPolicy::default()).await;
        store.close().await;
        let mut connection = PgConnection::connect(&schema.url).await.expect("connect");
        let indexes: Vec<String> = sqlx::query_scalar(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = 'audit_log' ORDER BY indexname",
        )
        .bind(schema.options.schema())
        .fetch_all(&mut connection)
        .await
        .expect("indexes");
        assert!(indexes.iter().any(|d| d.contains("(action, seq)")), "{indexes:?}");
        assert!(indexes.iter().any(|d| d.contains("(action, actor, outcome, ip)")), "{indexes:?}");
    });
}

#[test]
fn bodies_sealed_under_the_old_aad_are_resealed_at_open_and_refused_after() {
    use rampart_store::conformance_binding::{messages_to_upgrade, readable_bodies};
    in_fresh_schema(|schema, root| async move {
        let store = open(&schema, &root, EpochPolicy::default()).await;
        let (channel, texts) = messages_to_upgrade(&store).await;
        // As the release before the binding left the rows: sealed under AAD version 1, upgrade pending.
        assert_eq!(store.seal_as_before_body_binding().await.expect("old rows"), 3);
        assert_ne!(readable_bodies(&store, &channel).await, texts, "a version-1 body is not read as it is");
        store.close().await;
        let raw = PgTamper::open(&schema).await;
        let versions = "SELECT aad_version FROM messages WHERE body IS NOT NULL";
        assert_eq!(raw.numbers(versions).await, [1, 1, 1]);

        let store = open(&schema, &root, EpochPolicy::default()).await;
        assert_eq!(readable_bodies(&store, &channel).await, texts, "re-sealed bodies read back");
        assert_eq!(raw.numbers(versions).await, [2, 2, 2]);
        assert_eq!(raw.numbers("SELECT COUNT(*) FROM upgrades_pending").await, [0], "the upgrade is done");
        store.close().await;
        let store = open(&schema, &root, EpochPolicy::default()).await;
        assert_eq!(readable_bodies(&store, &channel).await, texts, "opening again changes nothing");

        // Once it is done, a version-1 body put back is refused, and a restart does not re-seal it.
        store.seal_as_before_body_binding().await.expect("old rows");
        raw.execute("DELETE FROM upgrades_pending").await;
        store.close().await;
        let store = open(&schema, &root, EpochPolicy::default()).await;
        assert_ne!(readable_bodies(&store, &channel).await, texts, "version 1 stays refused");
        store.close().await;
    });
}
