//! Runs the storage conformance suite against SQLite in a fresh temporary directory.

use rampart_store::{conformance, SqliteStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("rampart.db")).await.expect("open");
    conformance::run_all(&store).await;
    // Opening again runs no migration twice and keeps the data.
    drop(store);
    let again = SqliteStore::open(&dir.path().join("rampart.db")).await.expect("reopen");
    conformance::users_round_trip_and_search(&again).await;
}
