//! Test support: starts the real `rampart` binary on a free loopback port with fresh temporary
//! directories, waits for it to say where it listens, and gives an HTTPS client that trusts its
//! development CA (or a given CA). Every test talks to a real server over real TLS.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{json, Value};

pub const BIN: &str = env!("CARGO_BIN_EXE_rampart");
pub const PASSWORD: &str = "correct horse battery staple";
/// How long a starting server may take to say it listens.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A free loopback port (bound, then released for the server to take).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// The URL of a machine service (PostgreSQL, NATS) from `variable`. Unset: the test skips, saying
/// so, except under `CI=true`, where a missing service is a failure.
pub fn service_url(variable: &str, service: &str) -> Option<String> {
    match std::env::var(variable) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{variable} is not set, and CI=true: the {service} tests must run in CI")
        }
        _ => {
            eprintln!("note: {variable} is not set; skipping the {service} tests");
            None
        }
    }
}

pub struct Dirs {
    pub root: tempfile::TempDir,
}

impl Dirs {
    pub fn new() -> Self {
        Self { root: tempfile::tempdir().expect("temp dir") }
    }
    pub fn data(&self) -> PathBuf {
        self.root.path().join("data")
    }
    pub fn keys(&self) -> PathBuf {
        self.root.path().join("keys")
    }
    pub fn audit(&self) -> PathBuf {
        self.root.path().join("audit")
    }
    /// Writes a config file (with audit_dir set) and returns its path.
    pub fn config(&self, extra: &str) -> PathBuf {
        let path = self.root.path().join("rampart.toml");
        let text = format!("audit_dir = \"{}\"\n{extra}", self.audit().display());
        std::fs::write(&path, text).expect("write config");
        path
    }
}

pub struct Server {
    pub child: Child,
    pub port: u16,
    pub base: String,
    pub log: Arc<Mutex<String>>,
    pub dirs: Arc<Dirs>,
    pub config: PathBuf,
}

impl Server {
    /// Starts a server with the given extra config text and extra flags.
    pub fn start_with(dirs: Arc<Dirs>, config_text: &str, flags: &[&str]) -> Server {
        Self::start_on(dirs, config_text, flags, free_port())
    }

    /// `start_with` on a given port (a node restarted where the load balancer expects it).
    pub fn start_on(dirs: Arc<Dirs>, config_text: &str, flags: &[&str], port: u16) -> Server {
        let config = dirs.config(config_text);
        let mut command = Command::new(BIN);
        command
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(dirs.data())
            .arg("--key-dir")
            .arg(dirs.keys())
            .args(flags)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn rampart");
        let log = Arc::new(Mutex::new(String::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let log = Arc::clone(&log);
            let ready_tx = ready_tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if line.contains("rampart is listening on") {
                        let _ = ready_tx.send(());
                    }
                    log.lock().expect("log").push_str(&(line + "\n"));
                }
            });
        }
        if ready_rx.recv_timeout(START_TIMEOUT).is_err() {
            let _ = child.kill();
            panic!("server did not start; log:\n{}", log.lock().expect("log"));
        }
        Server { child, port, base: format!("https://localhost:{port}"), log, dirs, config }
    }

    pub fn start() -> Server {
        Self::start_with(Arc::new(Dirs::new()), "", &[])
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn origin(&self) -> String {
        self.base.clone()
    }

    pub fn log_text(&self) -> String {
        self.log.lock().expect("log").clone()
    }

    /// Whether the server's log holds `needle` within `wait` (a line is logged, and read from its
    /// pipe, a moment after what it reports has happened).
    pub async fn log_shows(&self, needle: &str, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if self.log_text().contains(needle) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the server with SIGTERM-equivalent (kill) and waits.
    pub fn stop(mut self) -> Arc<Dirs> {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Arc::clone(&self.dirs);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        Arc::clone(&self.dirs)
    }

    /// The development CA the server wrote.
    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.dirs.keys().join("dev-ca.pem")).expect("dev CA")
    }

    /// A client that trusts the server's CA, keeps cookies, and sends no Origin by default.
    pub fn client(&self) -> reqwest::Client {
        client_trusting(&[self.ca_pem()], true)
    }

    /// Runs `rampart WORDS… --config … --data-dir … --key-dir …` against this deployment.
    pub fn rampart(&self, words: &[&str]) -> std::process::Output {
        deployment_command(&self.dirs, &self.config, words).output().expect("run rampart")
    }

    /// Runs `rampart invite` against this deployment and returns the token.
    pub fn invite(&self, role: &str) -> String {
        let output = Command::new(BIN)
            .arg("invite")
            .arg("--config")
            .arg(&self.config)
            .arg("--data-dir")
            .arg(self.dirs.data())
            .arg("--key-dir")
            .arg(self.dirs.keys())
            .arg("--role")
            .arg(role)
            .output()
            .expect("run invite");
        assert!(output.status.success(), "invite failed: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).expect("utf8").trim().to_owned()
    }

    /// Enrolls a user with a fresh name through an invitation for `role` and logs in (token mode).
    pub async fn user(&self, role: &str) -> User {
        let token = self.invite(role);
        self.enroll_with(&token, role).await
    }

    pub async fn enroll_with(&self, invitation: &str, label: &str) -> User {
        let client = self.client();
        let username = unique(label);
        let response = client
            .post(self.url("/api/v1/auth/enroll"))
            .json(&json!({ "token": invitation, "username": username, "password": PASSWORD, "display_name": format!("{label} user") }))
            .send()
            .await
            .expect("enroll");
        assert_eq!(response.status(), 201, "enroll: {}", response.text().await.unwrap_or_default());
        let body: Value = response.json().await.expect("json");
        let id = body["user"]["id"].as_str().expect("id").to_owned();
        let token = self.login_token(&username, PASSWORD).await;
        User { id, username, token }
    }

    pub async fn login_token(&self, username: &str, password: &str) -> String {
        let response = self
            .client()
            .post(self.url("/api/v1/auth/login"))
            .json(&json!({ "username": username, "password": password, "mode": "token" }))
            .send()
            .await
            .expect("login");
        assert_eq!(response.status(), 200, "login: {}", response.text().await.unwrap_or_default());
        let body: Value = response.json().await.expect("json");
        body["token"].as_str().expect("token").to_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Debug)]
pub struct User {
    pub id: String,
    pub username: String,
    pub token: String,
}

impl User {
    pub fn bearer(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_str(&format!("Bearer {}", self.token)).expect("header"));
        headers
    }
}

pub fn unique(prefix: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{prefix}{n}x{:x}", nanos % 0xffff)
}

/// A rustls client config trusting exactly `cas`, for the given protocol versions.
pub fn rustls_client(cas: &[Vec<u8>], versions: &[&'static rustls::SupportedProtocolVersion]) -> rustls::ClientConfig {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    for pem in cas {
        for cert in CertificateDer::pem_slice_iter(pem) {
            roots.add(cert.expect("CA PEM")).expect("add CA");
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// An HTTPS client trusting `cas` (HTTP/2 and HTTP/1.1 by ALPN).
pub fn client_trusting(cas: &[Vec<u8>], cookies: bool) -> reqwest::Client {
    let mut tls = rustls_client(cas, &[&rustls::version::TLS13, &rustls::version::TLS12]);
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .cookie_store(cookies)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// Asserts the API.md error format with the given status and code, and returns the body.
pub async fn expect_error(response: reqwest::Response, status: u16, code: &str) -> Value {
    let actual = response.status().as_u16();
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let text = response.text().await.expect("body");
    assert_eq!(actual, status, "status for {text}");
    assert!(content_type.starts_with("application/json"), "content type {content_type} for {text}");
    let body: Value = serde_json::from_str(&text).expect("json error body");
    assert_eq!(body["error"]["code"], code, "{text}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{text}");
    body
}

/// A WebSocket client over real TLS (HTTP/1.1), speaking the frames of API.md.
pub struct Ws {
    stream: tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
}

/// How long a test waits for an expected frame.
pub const FRAME_WAIT: Duration = Duration::from_secs(10);

impl Server {
    /// Opens `/api/v1/events` with optional extra headers (Origin, Cookie, Authorization).
    pub async fn ws_with(&self, headers: &[(&str, String)]) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
        Ws::open(self.port, &self.ca_pem(), headers).await
    }

    /// Connects and authenticates with a first `auth` frame; returns the socket and `ready`.
    pub async fn ws(&self, user: &User) -> (Ws, Value) {
        let mut ws = self.ws_with(&[("origin", self.origin())]).await.expect("connect");
        ws.send(json!({ "type": "auth", "token": user.token })).await;
        let ready = ws.expect("ready").await;
        (ws, ready)
    }
}

impl Ws {
    /// Opens `/api/v1/events` on the server at `port` (trusting `ca`), with extra headers.
    pub async fn open(
        port: u16,
        ca: &[u8],
        headers: &[(&str, String)],
    ) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut config = rustls_client(&[ca.to_vec()], &[&rustls::version::TLS13]);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let tls = connector.connect(name, tcp).await?;
        let mut request = format!("wss://localhost:{port}/api/v1/events").into_client_request()?;
        for (name, value) in headers {
            request.headers_mut().insert(
                reqwest::header::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                reqwest::header::HeaderValue::from_str(value).expect("value"),
            );
        }
        let (stream, _) = tokio_tungstenite::client_async(request, tls).await?;
        Ok(Ws { stream })
    }

    /// The next JSON text frame within `wait`: `Ok(None)` on timeout, `Err(())` once the
    /// connection is closed or broken.
    pub async fn poll(&mut self, wait: Duration) -> Result<Option<Value>, ()> {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => return Ok(None),
                Ok(Some(Ok(Message::Text(text)))) => {
                    return Ok(Some(serde_json::from_str(text.as_str()).map_err(|_| ())?))
                }
                Ok(Some(Ok(Message::Close(_)))) | Ok(Some(Err(_))) | Ok(None) => return Err(()),
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    pub async fn send(&mut self, frame: Value) {
        use futures_util::SinkExt;
        self.stream
            .send(tokio_tungstenite::tungstenite::Message::Text(frame.to_string().into()))
            .await
            .expect("send frame");
    }

    pub async fn send_raw(
        &mut self,
        message: tokio_tungstenite::tungstenite::Message,
    ) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        use futures_util::SinkExt;
        self.stream.send(message).await
    }

    /// The next JSON text frame within `wait`, skipping pings; `None` on timeout or close.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Value> {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let message = tokio::time::timeout_at(deadline, self.stream.next()).await.ok()??.ok()?;
            match message {
                Message::Text(text) => return Some(serde_json::from_str(text.as_str()).expect("JSON frame")),
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// The next frame, which must have `type` = `kind`.
    pub async fn expect(&mut self, kind: &str) -> Value {
        let frame = self.next_within(FRAME_WAIT).await.unwrap_or_else(|| panic!("no {kind} frame"));
        assert_eq!(frame["type"], kind, "{frame}");
        frame
    }

    /// The next `event` frame whose kind is `kind`, skipping other frames (typing, other kinds).
    pub async fn expect_event(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.next_within(FRAME_WAIT).await.unwrap_or_else(|| panic!("no {kind} event"));
            if frame["type"] == "event" && frame["kind"] == kind {
                return frame;
            }
        }
    }

    /// The code and reason of the close frame the server sends within `wait`, skipping other
    /// frames; `None` when no close frame comes. While it waits it reads, so pings are answered.
    pub async fn close_within(&mut self, wait: Duration) -> Option<(u16, String)> {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.next()).await.ok()?? {
                Ok(Message::Close(frame)) => return frame.map(|f| (u16::from(f.code), f.reason.to_string())),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    /// Whether the server closed the connection within `wait` (frames before the close are
    /// returned).
    pub async fn drain_until_closed(&mut self, wait: Duration) -> (Vec<Value>, bool) {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        let deadline = tokio::time::Instant::now() + wait;
        let mut frames = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => return (frames, false),
                Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return (frames, true),
                Ok(Some(Ok(Message::Text(text)))) => frames.push(serde_json::from_str(text.as_str()).expect("json")),
                Ok(Some(Ok(_))) => {}
            }
        }
    }
}

/// `rampart WORDS…` with a deployment's config and directories.
pub fn deployment_command(dirs: &Dirs, config: &std::path::Path, words: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(words)
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(dirs.data())
        .arg("--key-dir")
        .arg(dirs.keys());
    command
}

/// JSON helpers for the messaging API.
impl Server {
    pub async fn post_json(&self, user: &User, path: &str, body: Value) -> reqwest::Response {
        self.client().post(self.url(path)).headers(user.bearer()).json(&body).send().await.expect("post")
    }

    pub async fn get_json(&self, user: &User, path: &str) -> reqwest::Response {
        self.client().get(self.url(path)).headers(user.bearer()).send().await.expect("get")
    }

    /// Creates a channel and returns its id.
    pub async fn channel(&self, user: &User, kind: &str) -> String {
        let response = self.post_json(user, "/api/v1/channels", json!({ "name": unique("room"), "kind": kind })).await;
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap_or_default());
        let body: Value = response.json().await.expect("json");
        body["id"].as_str().expect("id").to_owned()
    }

    /// Sends a message and returns it.
    pub async fn say(&self, user: &User, channel: &str, text: &str) -> Value {
        let response =
            self.post_json(user, &format!("/api/v1/channels/{channel}/messages"), json!({ "body": text })).await;
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap_or_default());
        response.json().await.expect("json")
    }

    /// The server process's resident set size, in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// The server process's peak resident set size (`VmHWM`) since it started or since
    /// `reset_peak_rss`, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    /// Sets the peak resident set size back to the current one (proc(5): `clear_refs` value 5).
    pub fn reset_peak_rss(&self) {
        std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5").expect("clear_refs");
    }

    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect(field)
    }
}

/// What a real client (curl, Python) saw of an answer: its status (0 when none arrived), its
/// body, and the client's own account of the exchange.
#[derive(Debug)]
pub struct Seen {
    pub status: u16,
    pub body: String,
    pub trace: String,
}

impl Seen {
    /// Asserts that the JSON error of API.md arrived with `status` and `code`.
    pub fn expect_error(&self, status: u16, code: &str, what: &str) {
        assert_eq!(self.status, status, "{what}: status; body {:?}; trace:\n{}", self.body, self.trace);
        let body: Value =
            serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("{what}: JSON body {:?}", self.body));
        assert_eq!(body["error"]["code"], code, "{what}: {}", self.body);
    }
}

/// Runs curl against the server with `args` (the URL among them), trusting its CA, with `stdin`
/// as its standard input.
pub fn curl(server: &Server, args: &[&str], stdin: Option<&std::path::Path>) -> Seen {
    let out = server.dirs.root.path().join(unique("curl-out"));
    let ca = server.dirs.keys().join("dev-ca.pem");
    let mut command = Command::new("curl");
    command.args(["-sS", "-v", "--max-time", "30", "-w", "%{http_code}", "-o"]).arg(&out).arg("--cacert").arg(&ca);
    command.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    command.stdin(match stdin {
        Some(path) => Stdio::from(std::fs::File::open(path).expect("stdin file")),
        None => Stdio::null(),
    });
    let output = command.output().expect("curl runs");
    Seen {
        status: String::from_utf8_lossy(&output.stdout).trim().parse().unwrap_or(0),
        body: std::fs::read_to_string(&out).unwrap_or_default(),
        trace: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Python's http.client over TLS: POSTs the file `body` to `path` with `content_type`, with a
/// `Content-Length` or, `chunked`, in chunks, the whole body before reading the answer (as that
/// client does), with `token` as its bearer token unless empty. `None` when there is no python3.
pub fn python_post(
    server: &Server,
    path: &str,
    content_type: &str,
    body: &std::path::Path,
    chunked: bool,
    token: &str,
) -> Option<Seen> {
    const SCRIPT: &str = r#"
import http.client, ssl, sys
ca, port, path, content_type, body_file, chunked, token = sys.argv[1:8]
context = ssl.create_default_context(cafile=ca)
connection = http.client.HTTPSConnection("localhost", int(port), context=context, timeout=30)
data = open(body_file, "rb").read()
headers = {"Content-Type": content_type}
if token:
    headers["Authorization"] = "Bearer " + token
if chunked == "1":
    pieces = (data[i:i + 65536] for i in range(0, len(data), 65536))
    connection.request("POST", path, body=pieces, headers=headers, encode_chunked=True)
else:
    connection.request("POST", path, body=data, headers=headers)
response = connection.getresponse()
sys.stdout.write(str(response.status) + "\n" + response.read().decode())
"#;
    let ca = server.dirs.keys().join("dev-ca.pem");
    let output = Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(&ca)
        .arg(server.port.to_string())
        .arg(path)
        .arg(content_type)
        .arg(body)
        .arg(if chunked { "1" } else { "0" })
        .arg(token)
        .output();
    let Ok(output) = output else {
        eprintln!("no python3: the Python client's part of this test is skipped");
        return None;
    };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let (status, body) = stdout.split_once('\n').unwrap_or(("0", ""));
    Some(Seen {
        status: status.trim().parse().unwrap_or(0),
        body: body.to_owned(),
        trace: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}
