//! The command line as a newcomer and a script meet it: first start, `invite`, and clear refusals
//! (exit 1 with one line) for unsafe key permissions and bad configuration; exit 2 for bad usage.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::sync::Arc;

use serde_json::json;

use crate::support::{Dirs, Server, BIN, PASSWORD};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_writes_a_private_enrollment_link_that_enrolls_the_owner() {
    let server = Server::start();
    let file = server.dirs.keys().join("owner-enrollment.txt");
    let mode = std::fs::metadata(&file).expect("enrollment file").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let key_dir_mode = std::fs::metadata(server.dirs.keys()).expect("key dir").permissions().mode() & 0o777;
    assert_eq!(key_dir_mode, 0o700);
    let text = std::fs::read_to_string(&file).expect("read");
    let token = text.split("token=").nth(1).expect("link").chars().take(43).collect::<String>();
    assert!(text.contains(&format!("{}/enroll#token=", server.base)));
    // The log points at the file and never holds the link itself.
    let log = server.log_text();
    assert!(log.contains("owner-enrollment.txt"));
    assert!(!log.contains(&token));
    assert!(log.contains("DEVELOPMENT CERTIFICATE"));
    let client = server.client();
    // The link opens a page served by the server itself, with no inline script.
    let page = client.get(server.url("/enroll")).send().await.expect("page");
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"].to_str().expect("type").starts_with("text/html"));
    let html = page.text().await.expect("html");
    assert!(html.contains("src=\"/assets/enroll.js\"") && !html.contains("<script>"));
    let enroll = client
        .post(server.url("/api/v1/auth/enroll"))
        .json(&json!({ "token": token, "username": "owner", "display_name": "The Owner", "password": PASSWORD }))
        .send()
        .await
        .expect("enroll");
    assert_eq!(enroll.status(), 201);
    let body: serde_json::Value = enroll.json().await.expect("json");
    assert_eq!(body["user"]["role"], "owner");
    server.login_token("owner", PASSWORD).await;
    // A restart with an owner in place issues no new link.
    let dirs = server.stop();
    std::fs::remove_file(&file).expect("remove");
    let again = Server::start_with(dirs, "", &[]);
    assert!(!again.dirs.keys().join("owner-enrollment.txt").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_prints_only_the_token() {
    let server = Server::start();
    let token = server.invite("member");
    assert_eq!(token.len(), 43);
    assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    server.enroll_with(&token, "member").await;
}

fn run(args: &[&str]) -> (i32, String) {
    let output = Command::new(BIN).args(args).output().expect("run");
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stderr).trim().to_owned())
}

#[test]
fn unsafe_key_permissions_and_bad_config_are_refused_with_one_line() {
    let dirs = Arc::new(Dirs::new());
    std::fs::create_dir_all(dirs.keys()).expect("keys");
    std::fs::set_permissions(dirs.keys(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let data = dirs.data();
    let keys = dirs.keys();
    let config = dirs.config("");
    let base = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().expect("path"),
        "--key-dir",
        keys.to_str().expect("path"),
        "--config",
        config.to_str().expect("path"),
    ];
    let (code, stderr) = run(&base);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("chmod 700") && stderr.lines().count() == 1, "{stderr}");

    std::fs::set_permissions(dirs.keys(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    std::fs::write(dirs.keys().join("stray.pem"), "x").expect("write");
    std::fs::set_permissions(dirs.keys().join("stray.pem"), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let (code, stderr) = run(&base);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("chmod 600"), "{stderr}");

    let bad = dirs.root.path().join("bad.toml");
    std::fs::write(&bad, "[limits]\nbody_bytes_max = 5\n").expect("write");
    let (code, stderr) = run(&["serve", "--config", bad.to_str().expect("path")]);
    assert_eq!(code, 1);
    assert!(stderr.contains("limits.body_bytes_max") && stderr.lines().count() == 1, "{stderr}");

    std::fs::write(&bad, "listen_port = 5\n").expect("write");
    let (code, stderr) = run(&["serve", "--config", bad.to_str().expect("path")]);
    assert_eq!(code, 1);
    assert!(stderr.contains("listen_port"), "{stderr}");

    let (code, _) = run(&["serve", "--no-such-flag"]);
    assert_eq!(code, 2);
    let (code, _) = run(&["invite", "--role", "emperor"]);
    assert_eq!(code, 2);
}
