//! Sessions and live sockets (issue 16, items 2, 10 and 11): a socket closes when its session
//! reaches its idle or absolute end (and stays while the store says the session is in use); a
//! revoked or disabled user's other token is refused over HTTP at once while requests race the
//! revocation, and its socket closes; `resume` is honoured once per connection.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::support::{expect_error, Dirs, Server, User, FRAME_WAIT, PASSWORD};

/// The node's heartbeat beats every connection this often in these tests.
const CONFIG: &str = "[sessions]\nidle_timeout_minutes = 1\n[websocket]\nping_interval_ms = 200\n";

async fn me_status(server: &Server, user: &User) -> u16 {
    let response = server.client().get(server.url("/api/v1/users/me")).headers(user.bearer()).send().await.expect("me");
    response.status().as_u16()
}

fn now_ms() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis()).expect("ms")
}

/// Changes session rows behind the server's back (as another node's requests would).
async fn sql(server: &Server, statement: &str) {
    let url = format!("sqlite://{}", server.dirs.data().join("rampart.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.expect("open db");
    sqlx::query(statement).execute(&pool).await.expect("update");
    pool.close().await;
}

/// Waits out the server's authentication cache (2 s), so the next check reads the store.
async fn wait_out_auth_cache() {
    tokio::time::sleep(Duration::from_millis(2_100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_16_a_socket_closes_when_its_session_reaches_its_lifetime_or_idle_end() {
    let server = Server::start_with(Arc::new(Dirs::new()), CONFIG, &[]);
    let lifetime = server.user("member").await;
    let idle = server.user("member").await;
    let busy = server.user("member").await;
    let channel = server.channel(&lifetime, "public").await;
    for user in [&idle, &busy] {
        assert_eq!(server.post_json(user, &format!("/api/v1/channels/{channel}/join"), json!({})).await.status(), 204);
    }
    let at = now_ms();
    // One session ends by its absolute lifetime in 4.5 s; two more have about 5 s of idleness
    // left (the idle timeout is a minute), below the touch interval, so nothing extends them.
    sql(&server, &format!("UPDATE sessions SET expires_at = {} WHERE user_id = '{}'", at + 4_500, lifetime.id)).await;
    let idle_ids = format!("'{}', '{}'", idle.id, busy.id);
    sql(&server, &format!("UPDATE sessions SET last_seen_at = {} WHERE user_id IN ({idle_ids})", at - 55_000)).await;
    wait_out_auth_cache().await;
    let (mut lifetime_ws, _) = server.ws(&lifetime).await;
    let (mut idle_ws, _) = server.ws(&idle).await;
    let (mut busy_ws, _) = server.ws(&busy).await;
    server.say(&busy, &channel, "before the end").await;
    for ws in [&mut lifetime_ws, &mut idle_ws] {
        assert_eq!(ws.expect_event("message.created").await["data"]["body"], "before the end");
    }
    // The busy session is used elsewhere meanwhile: the store's `last_seen_at` moves on.
    sql(&server, &format!("UPDATE sessions SET last_seen_at = {} WHERE user_id = '{}'", now_ms(), busy.id)).await;

    assert_eq!(lifetime_ws.close_within(FRAME_WAIT).await, Some((4001, "session expired".to_owned())));
    let (frames, closed) = idle_ws.drain_until_closed(FRAME_WAIT).await;
    assert!(closed, "the idle session's socket closes");
    assert!(frames.iter().any(|f| f["type"] == "error" && f["code"] == "unauthenticated"), "{frames:?}");
    for user in [&lifetime, &idle] {
        assert_eq!(me_status(&server, user).await, 401, "HTTP agrees with the socket");
    }
    // The session in use keeps its socket past the deadline the socket first knew.
    server.say(&busy, &channel, "after").await;
    assert_eq!(busy_ws.expect_event("message.created").await["data"]["body"], "before the end");
    assert_eq!(busy_ws.expect_event("message.created").await["data"]["body"], "after");
    assert_eq!(busy_ws.close_within(Duration::from_millis(1_000)).await, None, "a session in use stays open");
    assert_eq!(me_status(&server, &busy).await, 200);
}

/// Requests with `user`'s token, one after another, until told to stop; returns whether any was
/// answered 200 after `ended` was set.
fn hammer(
    server: &Arc<Server>,
    user: &User,
    ended: &Arc<AtomicBool>,
    stop: &Arc<AtomicBool>,
) -> tokio::task::JoinHandle<bool> {
    let (server, user, ended, stop) = (Arc::clone(server), user.clone(), Arc::clone(ended), Arc::clone(stop));
    tokio::spawn(async move {
        let mut accepted_after = false;
        while !stop.load(Ordering::Acquire) {
            let was_ended = ended.load(Ordering::Acquire);
            if me_status(&server, &user).await == 200 && was_ended {
                accepted_after = true;
            }
        }
        accepted_after
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_16_revoking_others_or_disabling_refuses_the_other_token_at_once_and_closes_its_socket() {
    let server = Arc::new(Server::start_with(Arc::new(Dirs::new()), CONFIG, &[]));
    let admin = server.user("admin").await;
    let victim = server.user("member").await;
    // Revoke others: the victim's second session races requests against the revocation.
    let other = User { token: server.login_token(&victim.username, PASSWORD).await, ..victim.clone() };
    let (mut other_ws, _) = server.ws(&other).await;
    let (ended, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let racer = hammer(&server, &other, &ended, &stop);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let revoked = server
        .client()
        .delete(server.url("/api/v1/auth/sessions"))
        .headers(victim.bearer())
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoked.status(), 204);
    ended.store(true, Ordering::Release);
    expect_error(
        server.client().get(server.url("/api/v1/users/me")).headers(other.bearer()).send().await.expect("me"),
        401,
        "unauthenticated",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Release);
    assert!(!racer.await.expect("racer"), "a request after the revocation was accepted");
    let (frames, closed) = other_ws.drain_until_closed(FRAME_WAIT).await;
    assert!(closed && frames.iter().any(|f| f["code"] == "unauthenticated"), "{frames:?}");

    // Disable: the same for the session that stayed.
    let (mut victim_ws, _) = server.ws(&victim).await;
    let (ended, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let racer = hammer(&server, &victim, &ended, &stop);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let disabled = server
        .client()
        .patch(server.url(&format!("/api/v1/admin/users/{}", victim.id)))
        .headers(admin.bearer())
        .json(&json!({ "disabled": true }))
        .send()
        .await
        .expect("disable");
    assert_eq!(disabled.status(), 200);
    ended.store(true, Ordering::Release);
    assert_eq!(me_status(&server, &victim).await, 401);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Release);
    assert!(!racer.await.expect("racer"), "a request after the disable was accepted");
    let (_, closed) = victim_ws.drain_until_closed(FRAME_WAIT).await;
    assert!(closed, "the disabled user's socket closes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_16_resume_is_honoured_once_per_connection() {
    let server = Server::start();
    let alice = server.user("member").await;
    let channel = server.channel(&alice, "public").await;
    for n in 0..3 {
        server.say(&alice, &channel, &format!("message {n}")).await;
    }
    let (mut ws, _) = server.ws(&alice).await;
    ws.send(json!({ "type": "resume", "cursors": { channel.as_str(): 0 } })).await;
    for seq in 1..=4 {
        assert_eq!(ws.expect("event").await["seq"], seq);
    }
    // A replay of the same resume is refused, and replays nothing.
    ws.send(json!({ "type": "resume", "cursors": { channel.as_str(): 0 } })).await;
    let refused = ws.expect("error").await;
    assert_eq!(refused["code"], "resume_refused", "{refused}");
    // The connection stays and goes on with live events only.
    server.say(&alice, &channel, "live").await;
    let live = ws.expect("event").await;
    assert_eq!((live["seq"].as_i64(), live["data"]["body"].as_str()), (Some(5), Some("live")));
}
