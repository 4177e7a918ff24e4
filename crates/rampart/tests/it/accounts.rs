//! Accounts and sessions: the whole lifecycle, no enumeration, throttling that survives a
//! restart, expired / revoked / logged-out tokens refused, CSRF refusal, session fixation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{expect_error, unique, Dirs, Server, PASSWORD};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_account_and_session_lifecycle_with_cookies_and_tokens() {
    let server = Server::start();
    let owner = server.user("owner").await;
    let browser = server.client();

    // Cookie login: the cookie has exactly the attributes of API.md and no token in the body.
    let response = browser
        .post(server.url("/api/v1/auth/login"))
        .header("origin", server.origin())
        .json(&json!({ "username": owner.username, "password": PASSWORD }))
        .send()
        .await
        .expect("login");
    assert_eq!(response.status(), 200);
    let cookie = response.headers().get("set-cookie").expect("set-cookie").to_str().expect("text").to_owned();
    assert!(cookie.starts_with("__Host-rampart_session="), "{cookie}");
    for attribute in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{attribute} missing from {cookie}");
    }
    assert!(!cookie.contains("Domain"), "{cookie}");
    let body: Value = response.json().await.expect("json");
    assert!(body.get("token").is_none(), "cookie mode returns no token");
    assert_eq!(body["user"]["username"], owner.username.as_str());
    assert!(body["expires_at"].as_str().is_some_and(|t| t.ends_with('Z')));

    let me: Value = browser.get(server.url("/api/v1/users/me")).send().await.expect("me").json().await.expect("json");
    assert_eq!(me["id"], owner.id.as_str());
    assert_eq!(me["role"], "owner");
    assert_eq!(me["mfa_enabled"], false);
    assert!(me.get("password_hash").is_none());

    // Sessions: the bearer one from `user()` and the cookie one; exactly one is current.
    let sessions: Vec<Value> =
        browser.get(server.url("/api/v1/auth/sessions")).send().await.expect("list").json().await.expect("json");
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);
    for key in ["id", "created_at", "last_seen_at", "ip", "user_agent", "current"] {
        assert!(sessions[0].get(key).is_some(), "session lacks {key}");
    }
    assert_eq!(sessions[0]["ip"], "127.0.0.1");

    // Revoke all but current: the bearer token dies.
    let revoked = browser
        .delete(server.url("/api/v1/auth/sessions"))
        .header("origin", server.origin())
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoked.status(), 204);
    let dead = server.client().get(server.url("/api/v1/users/me")).headers(owner.bearer()).send().await.expect("me");
    expect_error(dead, 401, "unauthenticated").await;

    // Password change: other sessions end, the current one gets a new token (cookie), the old
    // cookie value no longer works.
    let second = server.login_token(&owner.username, PASSWORD).await;
    let changed = browser
        .post(server.url("/api/v1/auth/password"))
        .header("origin", server.origin())
        .json(&json!({ "current_password": PASSWORD, "new_password": "a brand new passphrase 2026" }))
        .send()
        .await
        .expect("change");
    assert_eq!(changed.status(), 200);
    let new_cookie = changed.headers().get("set-cookie").expect("new cookie").to_str().expect("text").to_owned();
    assert_ne!(new_cookie, cookie);
    let old_value = cookie.split(';').next().expect("pair").to_owned();
    let replay =
        server.client().get(server.url("/api/v1/users/me")).header("cookie", old_value).send().await.expect("me");
    expect_error(replay, 401, "unauthenticated").await;
    let other = server
        .client()
        .get(server.url("/api/v1/users/me"))
        .header("authorization", format!("Bearer {second}"))
        .send()
        .await
        .expect("me");
    expect_error(other, 401, "unauthenticated").await;
    assert_eq!(browser.get(server.url("/api/v1/users/me")).send().await.expect("me").status(), 200);
    server.login_token(&owner.username, "a brand new passphrase 2026").await;

    // Logout: 204, Clear-Site-Data, and the session is dead.
    let logout =
        browser.post(server.url("/api/v1/auth/logout")).header("origin", server.origin()).send().await.expect("logout");
    assert_eq!(logout.status(), 204);
    assert_eq!(logout.headers().get("clear-site-data").expect("csd"), "\"cache\", \"cookies\", \"storage\"");
    let after = server
        .client()
        .get(server.url("/api/v1/users/me"))
        .header("cookie", new_cookie.split(';').next().expect("pair"))
        .send()
        .await
        .expect("me");
    expect_error(after, 401, "unauthenticated").await;

    // Nothing secret reached the log.
    let log = server.log_text();
    for secret in [PASSWORD, "a brand new passphrase 2026", owner.token.as_str(), second.as_str()] {
        assert!(!log.contains(secret), "the log contains a secret");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_user_and_wrong_password_answer_alike() {
    let server = Server::start();
    let user = server.user("member").await;
    let client = server.client();
    let attempt = |username: String| {
        let client = client.clone();
        let url = server.url("/api/v1/auth/login");
        async move {
            let started = Instant::now();
            let response = client
                .post(url)
                .json(&json!({ "username": username, "password": "wrong password here" }))
                .send()
                .await
                .expect("login");
            let status = response.status();
            let body = response.text().await.expect("body");
            (status, body, started.elapsed())
        }
    };
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    // Within the free failures, so neither is throttled.
    for _ in 0..3 {
        known.push(attempt(user.username.clone()).await);
        unknown.push(attempt(unique("ghost")).await);
    }
    for ((ks, kb, _), (us, ub, _)) in known.iter().zip(&unknown) {
        assert_eq!(ks, us);
        assert_eq!(kb, ub);
        assert_eq!(ks.as_u16(), 401);
    }
    // Both paths run one Argon2id verification; medians must be close.
    let median = |v: &Vec<(reqwest::StatusCode, String, Duration)>| {
        let mut times: Vec<Duration> = v.iter().map(|t| t.2).collect();
        times.sort();
        times[times.len() / 2]
    };
    let (k, u) = (median(&known), median(&unknown));
    let gap = k.abs_diff(u);
    assert!(gap < Duration::from_millis(40) + k.max(u) / 2, "known {k:?} vs unknown {u:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_answers_429_with_retry_after_and_survives_a_restart() {
    let dirs = Arc::new(Dirs::new());
    let config = "[login]\naccount_free_failures = 3\nbackoff_ms_base = 120000\n";
    let server = Server::start_with(Arc::clone(&dirs), config, &[]);
    let user = server.user("member").await;
    let client = server.client();
    let login = |password: &'static str| {
        client
            .post(server.url("/api/v1/auth/login"))
            .json(&json!({ "username": user.username, "password": password }))
            .send()
    };
    for _ in 0..4 {
        expect_error(login("wrong password here").await.expect("login"), 401, "invalid_credentials").await;
    }
    // Now throttled: even the right password is refused until the wait is over.
    let throttled = login(PASSWORD).await.expect("login");
    let retry_after: u64 =
        throttled.headers().get("retry-after").expect("retry-after").to_str().expect("text").parse().expect("secs");
    assert!((1..=120).contains(&retry_after), "{retry_after}");
    expect_error(throttled, 429, "too_many_requests").await;
    // The same for an unknown name's throttle key: it does not reveal the account exists.
    let dirs = server.stop();
    let server = Server::start_with(dirs, config, &[]);
    let client = server.client();
    let after_restart = client
        .post(server.url("/api/v1/auth/login"))
        .json(&json!({ "username": user.username, "password": PASSWORD }))
        .send()
        .await
        .expect("login");
    assert!(after_restart.headers().get("retry-after").is_some());
    expect_error(after_restart, 429, "too_many_requests").await;
    // The audit log recorded the failures and the throttling.
    let owner = server.user("owner").await;
    let audit: Vec<Value> = client
        .get(server.url("/api/v1/admin/audit?limit=1000"))
        .headers(owner.bearer())
        .send()
        .await
        .expect("audit")
        .json()
        .await
        .expect("json");
    assert!(audit.iter().any(|r| r["action"] == "auth.login" && r["outcome"] == "failure"));
    assert!(audit.iter().any(|r| r["action"] == "auth.login" && r["outcome"] == "denied"));
}

/// Changes session rows behind the server's back, then waits out its authentication cache
/// (2 s), as a change made on another node would be seen.
async fn set_session_times(server: &Server, sql: &str) {
    let url = format!("sqlite://{}", server.dirs.data().join("rampart.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.expect("open db");
    sqlx::query(sql).execute(&pool).await.expect("update");
    pool.close().await;
    tokio::time::sleep(Duration::from_millis(2_100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_expired_and_revoked_tokens_are_refused() {
    let server = Server::start();
    let idle = server.user("member").await;
    let client = server.client();
    let me = |user: &crate::support::User| client.get(server.url("/api/v1/users/me")).headers(user.bearer()).send();
    assert_eq!(me(&idle).await.expect("me").status(), 200);
    // Idle past the timeout.
    set_session_times(&server, &format!("UPDATE sessions SET last_seen_at = 0 WHERE user_id = '{}'", idle.id)).await;
    expect_error(me(&idle).await.expect("me"), 401, "unauthenticated").await;
    // Past the absolute lifetime, however recently used.
    let old = server.user("member").await;
    set_session_times(&server, &format!("UPDATE sessions SET expires_at = 1 WHERE user_id = '{}'", old.id)).await;
    expect_error(me(&old).await.expect("me"), 401, "unauthenticated").await;
    // Revoked from another session of the same user.
    let victim = server.user("member").await;
    let second = server.login_token(&victim.username, PASSWORD).await;
    let sessions: Vec<Value> = client
        .get(server.url("/api/v1/auth/sessions"))
        .header("authorization", format!("Bearer {second}"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let first_id = sessions.iter().find(|s| s["current"] == false).expect("the other session")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let revoke = client
        .delete(server.url(&format!("/api/v1/auth/sessions/{first_id}")))
        .header("authorization", format!("Bearer {second}"))
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoke.status(), 204);
    expect_error(me(&victim).await.expect("me"), 401, "unauthenticated").await;
    // Someone else's session id is "not found" (no IDOR).
    let stranger = server.user("member").await;
    let idor = client
        .delete(server.url(&format!("/api/v1/auth/sessions/{first_id}")))
        .headers(stranger.bearer())
        .send()
        .await
        .expect("idor");
    expect_error(idor, 404, "not_found").await;
    // Garbage tokens are refused the same way.
    let junk = client
        .get(server.url("/api/v1/users/me"))
        .header("authorization", "Bearer ' OR 1=1 --")
        .send()
        .await
        .expect("junk");
    expect_error(junk, 401, "unauthenticated").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_requests_that_change_state_need_a_same_origin_origin() {
    let server = Server::start();
    let user = server.user("member").await;
    let browser = server.client();
    let login = browser
        .post(server.url("/api/v1/auth/login"))
        .json(&json!({ "username": user.username, "password": PASSWORD }))
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), 200);
    // No Origin, and a foreign Origin: refused.
    let none = browser.post(server.url("/api/v1/auth/logout")).send().await.expect("logout");
    expect_error(none, 403, "cross_origin_request").await;
    let evil = browser
        .post(server.url("/api/v1/auth/logout"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .expect("logout");
    expect_error(evil, 403, "cross_origin_request").await;
    // A foreign Origin on login (login CSRF) is refused too.
    let evil_login = server
        .client()
        .post(server.url("/api/v1/auth/login"))
        .header("origin", "https://evil.example")
        .json(&json!({ "username": user.username, "password": PASSWORD }))
        .send()
        .await
        .expect("login");
    expect_error(evil_login, 403, "cross_origin_request").await;
    // Reads need no Origin; bearer requests need none either.
    assert_eq!(browser.get(server.url("/api/v1/users/me")).send().await.expect("me").status(), 200);
    let bearer =
        server.client().post(server.url("/api/v1/auth/logout")).headers(user.bearer()).send().await.expect("logout");
    assert_eq!(bearer.status(), 204);
    // Same origin: accepted.
    let ok =
        browser.post(server.url("/api/v1/auth/logout")).header("origin", server.origin()).send().await.expect("logout");
    assert_eq!(ok.status(), 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_carrying_a_session_cookie_ends_that_session() {
    let server = Server::start();
    let user = server.user("member").await;
    let planted = format!("__Host-rampart_session={}", user.token);
    let login = server
        .client()
        .post(server.url("/api/v1/auth/login"))
        .header("cookie", planted)
        .json(&json!({ "username": user.username, "password": PASSWORD }))
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), 200);
    let old = server.client().get(server.url("/api/v1/users/me")).headers(user.bearer()).send().await.expect("me");
    expect_error(old, 401, "unauthenticated").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_rules_and_one_time_invitations() {
    let server = Server::start();
    let client = server.client();
    let enroll = |token: String, username: String, password: &'static str| {
        client
            .post(server.url("/api/v1/auth/enroll"))
            .json(&json!({ "token": token, "username": username, "password": password, "display_name": "New Person" }))
            .send()
    };
    let token = server.invite("member");
    // Policy: too short, common, containing the username.
    expect_error(enroll(token.clone(), unique("p"), "short").await.expect("enroll"), 400, "weak_password").await;
    expect_error(enroll(token.clone(), unique("p"), "Password1234!").await.expect("enroll"), 400, "weak_password")
        .await;
    expect_error(
        enroll(token.clone(), "sampleuser".into(), "sampleuser and more words").await.expect("enroll"),
        400,
        "weak_password",
    )
    .await;
    expect_error(enroll(token.clone(), "bad name!".into(), PASSWORD).await.expect("enroll"), 400, "invalid_input")
        .await;
    // The invitation survived the refusals; now ten concurrent uses: exactly one wins.
    let attempts = (0..10).map(|i| enroll(token.clone(), format!("racer{i}"), PASSWORD));
    let results = futures_join_all(attempts).await;
    let created = results.iter().filter(|s| **s == 201).count();
    assert_eq!(created, 1, "{results:?}");
    assert!(results.iter().all(|s| *s == 201 || *s == 400), "{results:?}");
    expect_error(enroll(token, unique("late"), PASSWORD).await.expect("enroll"), 400, "invalid_invitation").await;
    let bogus = enroll("x".repeat(43), unique("bogus"), PASSWORD).await.expect("enroll");
    expect_error(bogus, 400, "invalid_invitation").await;
    // Usernames are one namespace, case-insensitively.
    let taken = server.user("member").await;
    let clash = enroll(server.invite("member"), taken.username.to_uppercase(), PASSWORD).await.expect("enroll");
    expect_error(clash, 409, "conflict").await;
}

/// Issue 16 item 15: a username that reads as an existing one (a look-alike by UTS #39 skeleton,
/// a letter from another script, an invisible character) is refused with a code that says why,
/// and so is a display name holding an invisible or direction character.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn look_alike_and_invisible_names_are_refused() {
    let server = Server::start();
    let client = server.client();
    let enroll = |token: &str, username: &str, display_name: &str| {
        client
            .post(server.url("/api/v1/auth/enroll"))
            .json(&json!({ "token": token, "username": username, "password": PASSWORD, "display_name": display_name }))
            .send()
    };
    let first = enroll(&server.invite("admin"), "admin", "Admin").await.expect("enroll");
    assert_eq!(first.status(), 201);
    let token = server.invite("member");
    for (username, status, code) in [
        ("adm1n", 409, "username_confusable"),
        ("adrnin", 409, "username_confusable"),
        ("ADM1N", 409, "username_confusable"),
        ("\u{430}dmin", 400, "invalid_input"),
        ("admin\u{200B}", 400, "invisible_character"),
        ("adm\u{2060}in", 400, "invisible_character"),
        ("\u{FEFF}admin", 400, "invisible_character"),
        ("admin\u{202E}", 400, "invisible_character"),
    ] {
        let response = enroll(&token, username, "New Person").await.expect("enroll");
        let body = expect_error(response, status, code).await;
        if code == "invisible_character" {
            let message = body["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains("U+"), "the sentence names the character: {message}");
        }
    }
    for display_name in
        ["Admin\u{200B}", "Ad\u{2060}min", "\u{FEFF}Admin", "\u{3164}", "evil\u{202E}gnp.exe", "a\u{2066}b\u{2069}"]
    {
        let response = enroll(&token, &unique("person"), display_name).await.expect("enroll");
        expect_error(response, 400, "invisible_character").await;
    }
    // The invitation survived every refusal; emoji sequences are no invisible characters.
    let ok = enroll(&token, "carol", "Carol \u{1F3F3}\u{FE0F}\u{200D}\u{1F308}").await.expect("enroll");
    assert_eq!(ok.status(), 201, "{}", ok.text().await.unwrap_or_default());
}

async fn futures_join_all<F: std::future::Future<Output = reqwest::Result<reqwest::Response>> + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<u16> {
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut statuses = Vec::new();
    for handle in handles {
        statuses.push(handle.await.expect("join").expect("request").status().as_u16());
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_search_finds_people_and_is_closed_to_guests() {
    let server = Server::start();
    let member = server.user("member").await;
    let other = server.user("member").await;
    let guest = server.user("guest").await;
    let client = server.client();
    let found: Vec<Value> = client
        .get(server.url(&format!("/api/v1/users?q={}", &other.username[..other.username.len() - 2])))
        .headers(member.bearer())
        .send()
        .await
        .expect("search")
        .json()
        .await
        .expect("json");
    assert!(found.iter().any(|u| u["id"] == other.id.as_str()));
    assert!(found.iter().all(|u| u.get("role").is_none() && u.get("password_hash").is_none()));
    let wildcard: Vec<Value> = client
        .get(server.url("/api/v1/users?q=%25"))
        .headers(member.bearer())
        .send()
        .await
        .expect("search")
        .json()
        .await
        .expect("json");
    assert!(wildcard.is_empty(), "a % is matched literally");
    let denied = client.get(server.url("/api/v1/users?q=a")).headers(guest.bearer()).send().await.expect("search");
    expect_error(denied, 403, "forbidden").await;
}
