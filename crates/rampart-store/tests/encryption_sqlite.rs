//! Encryption at rest on SQLite, seen from the files: no message text in any byte of the data
//! directory, a ciphertext moved to another row refuses to open without failing the read, and a
//! missing, wrong or exposed KEK stops the store from opening.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rampart_core::channel::ChannelKind;
use rampart_core::validate::{ChannelName, MessageBody, Topic};
use rampart_core::{ChannelId, MessageId, Role, Timestamp};
use rampart_store::conformance::make_user;
use rampart_store::conformance_keys::bodies;
use rampart_store::{
    ChannelStore, CreateChannelOutcome, EpochPolicy, KeyConfig, NewChannel, NewMessage, PostOutcome, SqliteStore,
    StoreError,
};

const SENTINEL: &str = "ZEBRA-SENTINEL-7f3a9c";
const NOW: Timestamp = Timestamp(1_800_000_000_000);

fn private_dir(path: PathBuf) -> PathBuf {
    std::fs::create_dir_all(&path).expect("dir");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    path
}

fn keys(dir: &Path) -> KeyConfig {
    KeyConfig { key_dir: private_dir(dir.to_owned()), epoch: EpochPolicy::default() }
}

async fn channel(store: &SqliteStore, creator: &rampart_store::UserRecord) -> ChannelId {
    let new = NewChannel {
        id: ChannelId::from_generated(format!("chan-{}", uuid_like())),
        kind: ChannelKind::Private,
        name: ChannelName::parse(&format!("c-{}", uuid_like())).expect("name"),
        topic: Topic::parse("").expect("topic"),
        created_by: creator.id.clone(),
        created_at: NOW,
    };
    match store.create_channel(&new).await.expect("create") {
        CreateChannelOutcome::Created(record, _) => record.id,
        other => panic!("{other:?}"),
    }
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{}", N.fetch_add(1, Ordering::Relaxed))
}

async fn send(
    store: &SqliteStore,
    channel: &ChannelId,
    sender: &rampart_store::UserRecord,
    text: &str,
    thread: Option<&MessageId>,
) -> MessageId {
    let new = NewMessage {
        id: MessageId::from_generated(format!("msg-{}", uuid_like())),
        channel_id: channel.clone(),
        sender_id: sender.id.clone(),
        body: MessageBody::parse(text).expect("body"),
        thread_id: thread.cloned(),
        client_id: None,
        created_at: NOW,
        files: Vec::new(),
    };
    match store.post_message(&new).await.expect("post") {
        PostOutcome::Created(_) => new.id,
        other => panic!("{other:?}"),
    }
}

/// Every file under `dir` that holds `needle`.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_message_text_reaches_any_file_of_the_data_directory() {
    let root = tempfile::tempdir().expect("temp dir");
    let data = private_dir(root.path().join("data"));
    let store = SqliteStore::open(&data.join("rampart.db"), &keys(&root.path().join("keys"))).await.expect("open");
    let user = make_user(&store, Role::Member).await;
    let channel = channel(&store, &user).await;
    let parent = send(&store, &channel, &user, &format!("top {SENTINEL}"), None).await;
    send(&store, &channel, &user, &format!("reply {SENTINEL}"), Some(&parent)).await;
    let edited = send(&store, &channel, &user, "plain words", None).await;
    store
        .edit_message(&edited, &MessageBody::parse(&format!("edit {SENTINEL}")).expect("body"), NOW)
        .await
        .expect("edit");
    let deleted = send(&store, &channel, &user, &format!("gone {SENTINEL}"), None).await;
    store.delete_message(&deleted, NOW).await.expect("delete");
    assert_eq!(
        bodies(&store, &channel).await[..3],
        [format!("top {SENTINEL}"), format!("reply {SENTINEL}"), format!("edit {SENTINEL}")]
    );

    // Before and after the WAL is written back into the main file.
    assert_eq!(files_containing(&data, SENTINEL.as_bytes()), Vec::<PathBuf>::new(), "before checkpoint");
    store.checkpoint_passive().await.expect("checkpoint");
    assert_eq!(files_containing(&data, SENTINEL.as_bytes()), Vec::<PathBuf>::new(), "after checkpoint");
    store.checkpoint().await.expect("checkpoint");
    assert_eq!(files_containing(&data, SENTINEL.as_bytes()), Vec::<PathBuf>::new(), "after truncate");
    // The check itself works: the sentinel is found where it is written in clear.
    std::fs::write(data.join("control.txt"), SENTINEL).expect("control");
    assert_eq!(files_containing(&data, SENTINEL.as_bytes()).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ciphertext_moved_to_another_row_fails_to_open_and_the_rest_still_loads() {
    let root = tempfile::tempdir().expect("temp dir");
    let db = root.path().join("rampart.db");
    let store = SqliteStore::open(&db, &keys(&root.path().join("keys"))).await.expect("open");
    let user = make_user(&store, Role::Member).await;
    let channel = channel(&store, &user).await;
    let first = send(&store, &channel, &user, "first", None).await;
    let second = send(&store, &channel, &user, "second", None).await;
    send(&store, &channel, &user, "third", None).await;

    let raw = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display())).await.expect("raw");
    sqlx::query("UPDATE messages SET body = (SELECT body FROM messages WHERE id = ?1) WHERE id = ?2")
        .bind(first.as_str())
        .bind(second.as_str())
        .execute(&raw)
        .await
        .expect("move ciphertext");

    let query = rampart_store::HistoryQuery { before_seq: None, after_seq: Some(0), thread_id: None, limit: 50 };
    let (messages, _) = store.history(&channel, query).await.expect("history still answers");
    let bodies: Vec<_> =
        messages.iter().map(|m| (m.body.as_ref().map(|b| b.as_str().to_owned()), m.unreadable)).collect();
    assert_eq!(bodies, [(Some("first".to_owned()), false), (None, true), (Some("third".to_owned()), false)]);
    let moved = store.message(&second).await.expect("read").expect("exists");
    assert!(moved.unreadable && moved.body.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_wrong_or_exposed_kek_stops_the_store_from_opening() {
    let root = tempfile::tempdir().expect("temp dir");
    let db = root.path().join("rampart.db");
    let right = keys(&root.path().join("keys"));
    drop(SqliteStore::open(&db, &right).await.expect("first open makes KEK 1"));

    let empty = keys(&root.path().join("empty"));
    let error = SqliteStore::open(&db, &empty).await.expect_err("missing KEK");
    assert!(matches!(error, StoreError::KeyMissing(1)), "{error}");

    let wrong = keys(&root.path().join("wrong"));
    let other_db = root.path().join("other.db");
    drop(SqliteStore::open(&other_db, &wrong).await.expect("another deployment's KEK 1"));
    let error = SqliteStore::open(&db, &wrong).await.expect_err("wrong KEK");
    assert!(matches!(error, StoreError::KeyMismatch(1)), "{error}");
    assert!(error.to_string().contains("check value"), "{error}");

    let file = right.key_dir.join("kek-1.key");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let error = SqliteStore::open(&db, &right).await.expect_err("world-readable key file");
    assert!(error.to_string().contains("chmod 600"), "{error}");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    drop(SqliteStore::open(&db, &right).await.expect("opens again once fixed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postings_carried_by_a_send_land_in_the_index_and_leave_the_message_row() {
    use rampart_core::search::SearchQuery;
    use sqlx::Connection;
    let root = tempfile::tempdir().expect("temp dir");
    let data = private_dir(root.path().join("data"));
    let store = SqliteStore::open(&data.join("rampart.db"), &keys(&root.path().join("keys"))).await.expect("open");
    let user = make_user(&store, Role::Member).await;
    let channel = channel(&store, &user).await;
    // A short message goes in one statement; a long one of many distinct words has more tokens
    // than the statement carries and takes the transaction path. Both must be found.
    send(&store, &channel, &user, "quokka sunrise", None).await;
    // 6,000 distinct CJK characters: about 6,000 bigram tokens, past the 4,096 slots.
    let long: String = (0..6_000).filter_map(|i| char::from_u32(0x4E00 + i)).collect();
    send(&store, &channel, &user, &format!("narwhal {long}"), None).await;
    let last_pair: String = long.chars().skip(5_998).collect();
    for word in ["quokka", "narwhal", last_pair.as_str()] {
        let query = SearchQuery::parse(word).expect("query");
        let page = store.search(&user.id, &query, None, None, 20).await.expect("search");
        assert_eq!(page.messages.len(), 1, "{word} is found");
    }
    store.checkpoint().await.expect("checkpoint");
    let url = format!("sqlite://{}", data.join("rampart.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("connect");
    let carried: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE index_tokens IS NOT NULL")
        .fetch_one(&mut conn)
        .await
        .expect("count");
    assert_eq!(carried, 0, "no message row keeps the postings it carried");
    let per_message: Vec<i64> = sqlx::query_scalar(
        "SELECT COUNT(s.token) FROM messages m LEFT JOIN search_index s ON s.message_rowid = m.rowid GROUP BY m.rowid",
    )
    .fetch_all(&mut conn)
    .await
    .expect("postings");
    assert_eq!(per_message.len(), 2);
    assert!(per_message.iter().all(|n| *n > 0), "every message has postings: {per_message:?}");
}

/// Direct writes to the database file, as someone with write access to it would make them.
struct SqliteTamper(sqlx::SqlitePool);

impl SqliteTamper {
    async fn open(db: &Path) -> Self {
        SqliteTamper(sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display())).await.expect("raw"))
    }
}

#[async_trait::async_trait]
impl rampart_store::conformance_binding::Tamper for SqliteTamper {
    async fn set_text(&self, message: &MessageId, column: &'static str, value: Option<&str>) {
        let sql = format!("UPDATE messages SET {column} = ? WHERE id = ?");
        sqlx::query(&sql).bind(value).bind(message.as_str()).execute(&self.0).await.expect("tamper");
    }

    async fn set_number(&self, message: &MessageId, column: &'static str, value: i64) {
        let sql = format!("UPDATE messages SET {column} = ? WHERE id = ?");
        sqlx::query(&sql).bind(value).bind(message.as_str()).execute(&self.0).await.expect("tamper");
    }

    async fn sealed(&self, message: &MessageId) -> (Vec<u8>, i64, i64) {
        sqlx::query_as("SELECT body, key_epoch, edit_count FROM messages WHERE id = ?")
            .bind(message.as_str())
            .fetch_one(&self.0)
            .await
            .expect("read the row")
    }

    async fn put_sealed(&self, message: &MessageId, body: &[u8], epoch: i64, edit_count: i64) {
        sqlx::query("UPDATE messages SET body = ?, key_epoch = ?, edit_count = ? WHERE id = ?")
            .bind(body)
            .bind(epoch)
            .bind(edit_count)
            .bind(message.as_str())
            .execute(&self.0)
            .await
            .expect("tamper");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_sender_thread_time_or_a_pre_edit_body_fails_the_integrity_check() {
    let root = tempfile::tempdir().expect("temp dir");
    let db = root.path().join("rampart.db");
    let store = SqliteStore::open(&db, &keys(&root.path().join("keys"))).await.expect("open");
    rampart_store::conformance_binding::run_all(&store, &SqliteTamper::open(&db).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_sealed_under_the_old_aad_are_resealed_at_open_and_refused_after() {
    use rampart_store::conformance_binding::{messages_to_upgrade, readable_bodies};
    let root = tempfile::tempdir().expect("temp dir");
    let db = root.path().join("rampart.db");
    let config = keys(&root.path().join("keys"));
    let store = SqliteStore::open(&db, &config).await.expect("open");
    let (channel, texts) = messages_to_upgrade(&store).await;
    // As the release before the binding left the rows: sealed under AAD version 1, upgrade pending.
    assert_eq!(store.seal_as_before_body_binding().await.expect("old rows"), 3);
    assert_ne!(readable_bodies(&store, &channel).await, texts, "a version-1 body is not read as it is");
    drop(store);
    let raw = SqliteTamper::open(&db).await;
    let versions: Vec<i64> = sqlx::query_scalar("SELECT aad_version FROM messages WHERE body IS NOT NULL")
        .fetch_all(&raw.0)
        .await
        .expect("read");
    assert_eq!(versions, [1, 1, 1]);

    let store = SqliteStore::open(&db, &config).await.expect("open re-seals");
    assert_eq!(readable_bodies(&store, &channel).await, texts, "re-sealed bodies read back");
    let versions: Vec<i64> = sqlx::query_scalar("SELECT aad_version FROM messages WHERE body IS NOT NULL")
        .fetch_all(&raw.0)
        .await
        .expect("read");
    assert_eq!(versions, [2, 2, 2]);
    let pending: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM upgrades_pending").fetch_one(&raw.0).await.expect("read");
    assert_eq!(pending, 0, "the upgrade is done");
    drop(store);
    let store = SqliteStore::open(&db, &config).await.expect("opening again changes nothing");
    assert_eq!(readable_bodies(&store, &channel).await, texts);

    // Once it is done, a version-1 body put back is refused, and a restart does not re-seal it.
    store.seal_as_before_body_binding().await.expect("old rows");
    sqlx::query("DELETE FROM upgrades_pending").execute(&raw.0).await.expect("clear");
    drop(store);
    let store = SqliteStore::open(&db, &config).await.expect("open");
    assert_ne!(readable_bodies(&store, &channel).await, texts, "version 1 stays refused");
}
