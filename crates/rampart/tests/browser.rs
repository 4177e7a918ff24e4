//! The web client in a real browser: runs `e2e/run.mjs` (Node.js, playwright-core, Debian's
//! headless Chromium) against this build's `rampart` binary — two people chatting live through a
//! network cut, the XSS corpus, session revocation, the admin console — and fails if any
//! scenario fails. Without Node.js, `e2e/node_modules` or Chromium the test says what is missing
//! and passes, except under `CI=true`, where a missing piece is a failure, never a silent skip.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where Debian's `chromium` package puts the browser (`RAMPART_E2E_CHROMIUM` overrides).
const CHROMIUM_DEFAULT: &str = "/usr/bin/chromium";
/// playwright-core's own floor (its `engines` field).
const NODE_MAJOR_MIN: u32 = 20;

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The major version of the `node` on PATH, if there is one.
fn node_major() -> Option<u32> {
    let output = Command::new("node").arg("--version").output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    text.trim().trim_start_matches('v').split('.').next()?.parse().ok()
}

/// What the browser tests need and this machine lacks, with how to get it.
fn missing_pieces(e2e: &Path) -> Vec<String> {
    let mut missing = Vec::new();
    match node_major() {
        None => missing.push("no `node` on PATH (apt-get install nodejs npm)".to_owned()),
        Some(major) if major < NODE_MAJOR_MIN => {
            missing.push(format!("Node.js {major} is older than {NODE_MAJOR_MIN}, which playwright-core needs"))
        }
        Some(_) => {}
    }
    if !e2e.join("node_modules/playwright-core").is_dir() {
        missing.push("no e2e/node_modules/playwright-core (npm ci --prefix e2e)".to_owned());
    }
    let chromium = std::env::var("RAMPART_E2E_CHROMIUM").unwrap_or_else(|_| CHROMIUM_DEFAULT.to_owned());
    if !Path::new(&chromium).exists() {
        missing.push(format!("no Chromium at {chromium} (apt-get install chromium)"));
    }
    missing
}

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| matches!(value.as_str(), "true" | "1" | "yes"))
}

#[test]
fn web_client_scenarios_pass_in_headless_chromium() {
    let root = repository_root();
    let e2e = root.join("e2e");
    let missing = missing_pieces(&e2e);
    if !missing.is_empty() {
        let why = format!("the browser tests cannot run: {}", missing.join("; "));
        assert!(!under_ci(), "{why}. Under CI=true this is a failure: .ci/run installs them.");
        eprintln!("SKIPPED {why}.");
        return;
    }
    let status = Command::new("node")
        .arg(e2e.join("run.mjs"))
        .arg(env!("CARGO_BIN_EXE_rampart"))
        .current_dir(&root)
        .status()
        .expect("start node");
    assert!(status.success(), "browser scenarios failed (output above; screenshots of failures in e2e/screenshots/)");
}
