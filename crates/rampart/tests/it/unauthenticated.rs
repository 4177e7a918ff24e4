//! The unauthenticated edge (issue 16 items 5 and 8): a known user is not locked out by someone
//! else's guesses, refused logins do not grow the audit log one record each, and one address has
//! a request budget on the endpoints that need no session.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::alerts::client_from;
use crate::support::{expect_error, Dirs, Server, PASSWORD};

async fn login(client: &reqwest::Client, server: &Server, username: &str, password: &str) -> reqwest::Response {
    client
        .post(server.url("/api/v1/auth/login"))
        .json(&json!({ "username": username, "password": password, "mode": "token" }))
        .send()
        .await
        .expect("login")
}

/// The audit records of `action` in an export (JSON lines).
fn exported(server: &Server, action: &str) -> Vec<Value> {
    let output = server.rampart(&["audit", "export", "--format", "jsonl"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json line"))
        .filter(|r| r["action"] == action)
        .collect()
}

/// Item 8: after guesses from one address lock the account, the right password from an address
/// that has not failed on it signs in; the guessing address is refused even with the right
/// password (so its 429 says nothing about the password), and a fresh address gets one guess.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guesses_from_one_address_do_not_lock_the_user_out_of_another() {
    let dirs = Arc::new(Dirs::new());
    let config = "[login]\naccount_free_failures = 3\naccount_lock_failures = 6\nbackoff_ms_base = 120000\n";
    let server = Server::start_with(dirs, config, &[]);
    let user = server.user("member").await;
    let attacker = client_from(&server, "127.0.3.1");
    let mut refused = 0;
    for _ in 0..8 {
        if login(&attacker, &server, &user.username, "wrong password here").await.status() == 429 {
            refused += 1;
        }
    }
    assert!(refused > 0, "the guessing address is throttled");
    expect_error(login(&attacker, &server, &user.username, PASSWORD).await, 429, "too_many_requests").await;

    let fresh = client_from(&server, "127.0.3.3");
    expect_error(login(&fresh, &server, &user.username, "another wrong one").await, 401, "invalid_credentials").await;
    let after_guess = login(&fresh, &server, &user.username, PASSWORD).await;
    assert!(after_guess.headers().get("retry-after").is_some());
    expect_error(after_guess, 429, "too_many_requests").await;

    let victim = client_from(&server, "127.0.3.2");
    let signed_in = login(&victim, &server, &user.username, PASSWORD).await;
    assert_eq!(signed_in.status(), 200, "{:?}", signed_in.text().await);
    // The guessing address stays throttled after the user signed in.
    expect_error(login(&attacker, &server, &user.username, PASSWORD).await, 429, "too_many_requests").await;
}

/// Item 5: 30 refused logins from one address are not 30 audit records: the first failure and
/// the first throttled one are written at once, the rest become summaries with their count
/// (written at stop here), and every attempt is accounted for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_refusals_are_one_record_and_a_summary_with_a_count() {
    let dirs = Arc::new(Dirs::new());
    let server = Server::start_with(Arc::clone(&dirs), "", &[]);
    let user = server.user("member").await;
    let client = client_from(&server, "127.0.4.1");
    for _ in 0..30 {
        let status = login(&client, &server, &user.username, "wrong password here").await.status();
        assert!(matches!(status.as_u16(), 401 | 429), "{status}");
    }
    let from_client = |records: Vec<Value>| -> Vec<Value> {
        records.into_iter().filter(|r| r["ip"] == "127.0.4.1" && r["outcome"] != "success").collect()
    };
    let written = from_client(exported(&server, "auth.login"));
    assert!(written.len() <= 2, "one record per kind of refusal, not per request: {written:?}");

    let server = Server::start_with(server.stop(), "", &[]);
    let records = from_client(exported(&server, "auth.login"));
    let repeated: u64 = records.iter().filter_map(|r| r["details"]["repeated"].as_u64()).sum();
    assert!(records.len() <= 4, "{records:?}");
    assert_eq!(
        records.len() as u64 - records.iter().filter(|r| r["details"]["repeated"].is_u64()).count() as u64 + repeated,
        30,
        "{records:?}"
    );
}

/// Item 5: one address has a budget on the unauthenticated endpoints: past it, 429 with
/// `Retry-After` and the JSON error shape; another address is not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_has_a_request_budget_on_unauthenticated_endpoints() {
    let dirs = Arc::new(Dirs::new());
    let config = "[limits]\nunauthenticated_burst = 5\nunauthenticated_per_minute = 1\n";
    let server = Server::start_with(dirs, config, &[]);
    let client = client_from(&server, "127.0.5.1");
    for _ in 0..5 {
        expect_error(login(&client, &server, "nobody", "wrong password here").await, 401, "invalid_credentials").await;
    }
    let over = login(&client, &server, "nobody", "wrong password here").await;
    let retry_after: u64 =
        over.headers().get("retry-after").expect("retry-after").to_str().expect("text").parse().expect("secs");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body = expect_error(over, 429, "too_many_requests").await;
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("address")), "{body}");
    let enroll = client
        .post(server.url("/api/v1/auth/enroll"))
        .json(&json!({ "token": "x", "username": "newbie", "password": "a long enough password", "display_name": "N" }))
        .send()
        .await
        .expect("enroll");
    expect_error(enroll, 429, "too_many_requests").await;
    let other = client_from(&server, "127.0.5.2");
    expect_error(login(&other, &server, "nobody", "wrong password here").await, 401, "invalid_credentials").await;
}
