//! The storage conformance suite: written once, run against every `Store` implementation (SQLite
//! now, PostgreSQL next). Each check makes its own users with fresh names, so checks can share one
//! database. A check panics with a message naming what broke.

use std::sync::atomic::{AtomicU64, Ordering};

use rampart_core::throttle::{after_failure, ThrottlePolicy, ThrottleScope};
use rampart_core::validate::{DirectoryQuery, DisplayName, Username};
use rampart_core::{Role, SessionId, Timestamp, UserId};

use crate::model::*;
use crate::{Backend, Store};

static COUNTER: AtomicU64 = AtomicU64::new(0);

pub(crate) fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{prefix}-{n}-{nanos:x}")
}

pub(crate) fn id(prefix: &str) -> String {
    unique(prefix).replace('_', "-")
}

pub(crate) const NOW: Timestamp = Timestamp(1_800_000_000_000);

async fn invite(store: &dyn Store, role: Role) -> String {
    let token_hash = unique("hash");
    let invitation = NewInvitation {
        token_hash: token_hash.clone(),
        role,
        created_by: None,
        created_at: NOW,
        expires_at: NOW.plus_ms(3_600_000),
    };
    store.create_invitation(&invitation).await.expect("create invitation");
    token_hash
}

fn new_user(username: &str) -> NewUser {
    NewUser {
        id: UserId::from_generated(id("user")),
        username: Username::parse(username).expect("valid username"),
        display_name: DisplayName::parse("Test User").expect("valid name"),
        password_hash: "$argon2id$placeholder".to_owned(),
        created_at: NOW,
    }
}

/// Enrolls a fresh user with `role` and returns it.
pub async fn make_user(store: &dyn Store, role: Role) -> UserRecord {
    let token = invite(store, role).await;
    let name = unique("u");
    match store.enroll(&token, NOW, &new_user(&name)).await.expect("enroll") {
        EnrollOutcome::Enrolled(user) => user,
        other => panic!("enroll failed: {other:?}"),
    }
}

fn new_session(user: &UserId, created_at: Timestamp) -> NewSession {
    NewSession {
        id: SessionId::from_generated(id("session")),
        token_hash: unique("token"),
        user_id: user.clone(),
        created_at,
        expires_at: created_at.plus_ms(3_600_000),
        ip: "192.0.2.1".to_owned(),
        user_agent: "conformance".to_owned(),
    }
}

/// Runs every check.
pub async fn run_all(store: &dyn Backend) {
    run_accounts(store).await;
    crate::conformance_channels::run_all(store).await;
    crate::conformance_search::run_all(store).await;
    crate::conformance_files::run_all(store).await;
}

/// The account, session and throttle checks.
pub async fn run_accounts(store: &dyn Store) {
    store.ping().await.expect("ping");
    invitation_is_used_once(store).await;
    enrollment_with_taken_username_leaves_invitation_unused(store).await;
    enrollment_with_look_alike_username_leaves_invitation_unused(store).await;
    expired_invitation_is_refused(store).await;
    users_round_trip_and_search(store).await;
    sessions_lifecycle(store).await;
    session_cap_ends_the_oldest(store).await;
    password_change_replaces_every_session(store).await;
    disabling_ends_sessions(store).await;
    last_owner_is_kept(store).await;
    throttle_state_accumulates_and_clears(store).await;
    rate_buckets_allow_the_burst_then_the_rate(store).await;
    search_treats_wildcards_literally(store).await;
}

pub async fn invitation_is_used_once(store: &dyn Store) {
    let token = invite(store, Role::Member).await;
    assert!(store.invitation_is_open(&token, NOW).await.expect("open"));
    let first = store.enroll(&token, NOW, &new_user(&unique("a"))).await.expect("enroll");
    assert!(matches!(first, EnrollOutcome::Enrolled(ref u) if u.role == Role::Member), "{first:?}");
    let second = store.enroll(&token, NOW, &new_user(&unique("b"))).await.expect("enroll");
    assert_eq!(second, EnrollOutcome::InvalidInvitation, "an invitation must work once");
    let unknown = store.enroll("no-such-hash", NOW, &new_user(&unique("c"))).await.expect("enroll");
    assert_eq!(unknown, EnrollOutcome::InvalidInvitation);
}

pub async fn enrollment_with_taken_username_leaves_invitation_unused(store: &dyn Store) {
    let existing = make_user(store, Role::Member).await;
    let token = invite(store, Role::Guest).await;
    let clash = store.enroll(&token, NOW, &new_user(existing.username.as_str())).await.expect("enroll");
    assert_eq!(clash, EnrollOutcome::UsernameTaken);
    let retry = store.enroll(&token, NOW, &new_user(&unique("d"))).await.expect("enroll");
    assert!(matches!(retry, EnrollOutcome::Enrolled(ref u) if u.role == Role::Guest), "{retry:?}");
}

pub async fn enrollment_with_look_alike_username_leaves_invitation_unused(store: &dyn Store) {
    let name = unique("admin");
    let token = invite(store, Role::Member).await;
    let first = store.enroll(&token, NOW, &new_user(&name)).await.expect("enroll");
    assert!(matches!(first, EnrollOutcome::Enrolled(_)), "{first:?}");
    let token = invite(store, Role::Member).await;
    for look_alike in [name.replace('i', "1"), name.replace('m', "rn")] {
        let clash = store.enroll(&token, NOW, &new_user(&look_alike)).await.expect("enroll");
        assert_eq!(clash, EnrollOutcome::UsernameConfusable, "{look_alike} looks like {name}");
    }
    let retry = store.enroll(&token, NOW, &new_user(&unique("other"))).await.expect("enroll");
    assert!(matches!(retry, EnrollOutcome::Enrolled(_)), "{retry:?}");
}

/// Users stored before username skeletons existed, `(id, username)`, oldest first: `admin`, a
/// look-alike of it that was let in then, and `bob`. A backend's test inserts them with no
/// skeleton, opens the store again (which must start), then runs `legacy_usernames_are_fenced`.
pub const LEGACY_USERS: [(&str, &str); 3] = [
    ("00000000-0000-4000-8000-000000000001", "admin"),
    ("00000000-0000-4000-8000-000000000002", "adrnin"),
    ("00000000-0000-4000-8000-000000000003", "bob"),
];

/// After the start that filled skeletons: the older of two look-alikes holds the skeleton, and no
/// new look-alike of any stored user enrolls.
pub async fn legacy_usernames_are_fenced(store: &dyn Store) {
    let token = invite(store, Role::Member).await;
    for (name, expected) in [
        ("adm1n", EnrollOutcome::UsernameConfusable),
        ("adrn1n", EnrollOutcome::UsernameConfusable),
        ("adrnin", EnrollOutcome::UsernameTaken),
        ("b0b", EnrollOutcome::UsernameConfusable),
    ] {
        let outcome = store.enroll(&token, NOW, &new_user(name)).await.expect("enroll");
        assert_eq!(outcome, expected, "{name}");
    }
    for (_, name) in LEGACY_USERS {
        assert!(store.user_by_username(name).await.expect("read").is_some(), "{name} is still there");
    }
}

pub async fn expired_invitation_is_refused(store: &dyn Store) {
    let token = invite(store, Role::Member).await;
    let late = NOW.plus_ms(3_600_001);
    let outcome = store.enroll(&token, late, &new_user(&unique("e"))).await.expect("enroll");
    assert_eq!(outcome, EnrollOutcome::InvalidInvitation);
    assert!(!store.has_open_invitation(Role::Member, Timestamp(i64::MAX - 1)).await.expect("open"));
}

pub async fn users_round_trip_and_search(store: &dyn Store) {
    let user = make_user(store, Role::Admin).await;
    let by_id = store.user_by_id(&user.id).await.expect("by id").expect("exists");
    assert_eq!(by_id, user);
    let by_name = store.user_by_username(user.username.as_str()).await.expect("by name").expect("exists");
    assert_eq!(by_name.id, user.id);
    let query = DirectoryQuery::parse(user.username.as_str()).expect("query");
    let found = store.search_users(&query, 10).await.expect("search");
    assert_eq!(found.len(), 1);
    store.record_login(&user.id, NOW.plus_ms(5)).await.expect("record login");
    let after = store.user_by_id(&user.id).await.expect("by id").expect("exists");
    assert_eq!(after.last_login_at, Some(NOW.plus_ms(5)));
    assert!(store.user_by_id(&UserId::from_generated(id("ghost"))).await.expect("by id").is_none());
    assert!(store.count_users().await.expect("count") >= 1);
    assert!(!store.list_users(1000).await.expect("list").is_empty());
}

pub async fn sessions_lifecycle(store: &dyn Store) {
    let user = make_user(store, Role::Member).await;
    let other = make_user(store, Role::Member).await;
    let first = new_session(&user.id, NOW);
    let second = new_session(&user.id, NOW.plus_ms(1));
    store.create_session(&first, 10).await.expect("create");
    store.create_session(&second, 10).await.expect("create");
    let found = store.session_by_token_hash(&first.token_hash).await.expect("lookup").expect("exists");
    assert_eq!(found.user_id, user.id);
    store.touch_session(&first.id, NOW.plus_ms(500)).await.expect("touch");
    let touched = store.session_by_token_hash(&first.token_hash).await.expect("lookup").expect("exists");
    assert_eq!(touched.last_seen_at, NOW.plus_ms(500));
    assert_eq!(store.list_sessions(&user.id).await.expect("list").len(), 2);
    // Someone else's session id is not ours to end.
    assert!(!store.delete_session(&other.id, &first.id).await.expect("delete"));
    assert!(store.delete_session(&user.id, &first.id).await.expect("delete"));
    assert!(store.session_by_token_hash(&first.token_hash).await.expect("lookup").is_none());
    let third = new_session(&user.id, NOW.plus_ms(2));
    store.create_session(&third, 10).await.expect("create");
    assert_eq!(store.delete_sessions_except(&user.id, Some(&third.id)).await.expect("delete"), 1);
    assert_eq!(store.list_sessions(&user.id).await.expect("list").len(), 1);
    let stale = store.delete_stale_sessions(NOW.plus_ms(3_600_003), Timestamp(0)).await.expect("stale");
    assert!(stale >= 1);
    assert!(store.list_sessions(&user.id).await.expect("list").is_empty());
}

pub async fn session_cap_ends_the_oldest(store: &dyn Store) {
    let user = make_user(store, Role::Member).await;
    let sessions: Vec<NewSession> = (0..4).map(|i| new_session(&user.id, NOW.plus_ms(i))).collect();
    for session in &sessions {
        store.create_session(session, 3).await.expect("create");
    }
    let left = store.list_sessions(&user.id).await.expect("list");
    assert_eq!(left.len(), 3);
    assert!(left.iter().all(|s| s.id != sessions[0].id), "the oldest must go");
}

pub async fn password_change_replaces_every_session(store: &dyn Store) {
    let user = make_user(store, Role::Member).await;
    let old_a = new_session(&user.id, NOW);
    let old_b = new_session(&user.id, NOW);
    store.create_session(&old_a, 10).await.expect("create");
    store.create_session(&old_b, 10).await.expect("create");
    let fresh = new_session(&user.id, NOW.plus_ms(10));
    store.change_password(&user.id, "$argon2id$new", &fresh).await.expect("change");
    let left = store.list_sessions(&user.id).await.expect("list");
    assert_eq!(left.iter().map(|s| s.id.clone()).collect::<Vec<_>>(), vec![fresh.id]);
    let after = store.user_by_id(&user.id).await.expect("by id").expect("exists");
    assert_eq!(after.password_hash, "$argon2id$new");
}

pub async fn disabling_ends_sessions(store: &dyn Store) {
    let user = make_user(store, Role::Member).await;
    let session = new_session(&user.id, NOW);
    store.create_session(&session, 10).await.expect("create");
    assert_eq!(store.set_user_disabled(&user.id, true).await.expect("disable"), GuardedUpdate::Done);
    assert!(store.list_sessions(&user.id).await.expect("list").is_empty());
    assert!(store.user_by_id(&user.id).await.expect("by id").expect("exists").disabled);
    let query = DirectoryQuery::parse(user.username.as_str()).expect("query");
    assert!(store.search_users(&query, 10).await.expect("search").is_empty(), "disabled users are not listed");
    assert_eq!(store.set_user_disabled(&user.id, false).await.expect("enable"), GuardedUpdate::Done);
    let ghost = UserId::from_generated(id("ghost"));
    assert_eq!(store.set_user_disabled(&ghost, true).await.expect("disable"), GuardedUpdate::NotFound);
    assert_eq!(store.set_user_role(&ghost, Role::Admin).await.expect("role"), GuardedUpdate::NotFound);
}

pub async fn last_owner_is_kept(store: &dyn Store) {
    // Demote every owner but one, so this check starts from a known state.
    let owners: Vec<UserRecord> = store
        .list_users(100_000)
        .await
        .expect("list")
        .into_iter()
        .filter(|u| u.role == Role::Owner && !u.disabled)
        .collect();
    let keep = make_user(store, Role::Owner).await;
    for owner in owners {
        assert_eq!(store.set_user_role(&owner.id, Role::Member).await.expect("demote"), GuardedUpdate::Done);
    }
    assert_eq!(store.count_enabled_owners().await.expect("count"), 1);
    assert_eq!(store.set_user_role(&keep.id, Role::Admin).await.expect("demote"), GuardedUpdate::LastOwner);
    assert_eq!(store.set_user_disabled(&keep.id, true).await.expect("disable"), GuardedUpdate::LastOwner);
    let second = make_user(store, Role::Owner).await;
    assert_eq!(store.set_user_role(&keep.id, Role::Admin).await.expect("demote"), GuardedUpdate::Done);
    assert_eq!(store.set_user_role(&second.id, Role::Member).await.expect("demote"), GuardedUpdate::LastOwner);
}

pub async fn throttle_state_accumulates_and_clears(store: &dyn Store) {
    let key = unique("k");
    let policy = ThrottlePolicy::ACCOUNT_DEFAULT;
    assert!(store.throttle_state(ThrottleScope::Account, &key).await.expect("state").is_none());
    for expected in 1..=3u32 {
        let step = |prev| after_failure(prev, NOW, &policy);
        let state = store.throttle_failure(ThrottleScope::Account, &key, &step).await.expect("failure");
        assert_eq!(state.failures, expected);
    }
    // Scopes are separate keyspaces.
    assert!(store.throttle_state(ThrottleScope::Ip, &key).await.expect("state").is_none());
    let stored = store.throttle_state(ThrottleScope::Account, &key).await.expect("state").expect("exists");
    assert_eq!(stored.failures, 3);
    store.throttle_clear(ThrottleScope::Account, &key).await.expect("clear");
    assert!(store.throttle_state(ThrottleScope::Account, &key).await.expect("state").is_none());
}

pub async fn rate_buckets_allow_the_burst_then_the_rate(store: &dyn Store) {
    let key = unique("send:");
    // 10 per second (100 ms apart), a burst of 3.
    let at = |now_us: i64| crate::RateBucket { now_us, interval_us: 100_000, tolerance_us: 300_000 };
    let start = 1_000_000_000;
    for n in 0..3 {
        assert_eq!(store.rate_take(&key, at(start)).await.expect("take"), None, "burst unit {n}");
    }
    let wait = store.rate_take(&key, at(start)).await.expect("take").expect("the burst is spent");
    assert_eq!(wait, 100_000, "one interval until the next unit");
    assert!(store.rate_take(&key, at(start + 50_000)).await.expect("take").is_some(), "not yet");
    assert_eq!(store.rate_take(&key, at(start + 100_000)).await.expect("take"), None, "one unit later");
    // Another key is another bucket; a swept bucket starts full.
    assert_eq!(store.rate_take(&unique("send:"), at(start)).await.expect("take"), None);
    assert!(store.rate_sweep(start + 10_000_000).await.expect("sweep") >= 2);
    for _ in 0..3 {
        assert_eq!(store.rate_take(&key, at(start + 10_000_000)).await.expect("take"), None);
    }
}

pub async fn search_treats_wildcards_literally(store: &dyn Store) {
    make_user(store, Role::Member).await;
    let query = DirectoryQuery::parse("%").expect("query");
    assert!(store.search_users(&query, 10).await.expect("search").is_empty(), "% must not match everything");
    let query = DirectoryQuery::parse("' OR 1=1 --").expect("query");
    assert!(store.search_users(&query, 10).await.expect("search").is_empty());
}
