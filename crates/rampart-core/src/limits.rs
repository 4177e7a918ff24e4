//! Every limit Rampart enforces, as a named constant with its unit last. Those an admin may want to
//! change have a config override (see `rampart.example.toml`); the rest are fixed by the protocol or
//! by safety. The table in README.md lists them all.

// ----- identity and input sizes -----

/// Longest id we accept from outside (ids are 36-character UUID text).
pub const ID_CHARS_MAX: usize = 64;
/// Usernames: 1 to 32 characters of `[a-z0-9._-]`, starting with a letter or digit.
pub const USERNAME_CHARS_MAX: usize = 32;
/// Display names: 1 to 64 Unicode scalar values after NFC.
pub const DISPLAY_NAME_CHARS_MAX: usize = 64;
/// Passwords: 12 to 256 Unicode scalar values, used exactly as typed (NIST SP 800-63B).
pub const PASSWORD_CHARS_MIN: usize = 12;
pub const PASSWORD_CHARS_MAX: usize = 256;
/// The optional TOTP code field.
pub const TOTP_CHARS_MAX: usize = 16;
/// A directory search query.
pub const DIRECTORY_QUERY_CHARS_MAX: usize = 64;
/// Most users a directory search returns.
pub const DIRECTORY_RESULTS_MAX: u32 = 25;
/// Most users the admin user list returns in one response.
pub const ADMIN_USER_LIST_MAX: u32 = 10_000;
/// A token presented by a client (base64url of 32 bytes is 43 characters).
pub const TOKEN_CHARS_MAX: usize = 128;
/// The stored User-Agent of a session is cut to this many characters.
pub const USER_AGENT_CHARS_MAX: usize = 256;

// ----- audit log -----

/// The audit chain's head is signed after this many records…
pub const AUDIT_CHECKPOINT_RECORDS: u64 = 100;
/// …and at least this often when records were added, and at stop.
pub const AUDIT_CHECKPOINT_INTERVAL_SECS: u64 = 10;
/// Records read per page by `rampart audit export` and `tail --follow`.
pub const AUDIT_EXPORT_PAGE_MAX: u32 = 1_000;
/// Records `rampart audit tail` shows by default.
pub const AUDIT_TAIL_DEFAULT: u32 = 20;
/// Forwarding to a SIEM (`audit.forward`): the wait before reconnecting to a collector starts
/// here and doubles after each failure up to the max; a connection that delivers resets it.
pub const AUDIT_FORWARD_BACKOFF_MS_MIN: u64 = 1_000;
pub const AUDIT_FORWARD_BACKOFF_MS_MAX: u64 = 30_000;
/// Records read, framed and written per page before the cursor is saved.
pub const AUDIT_FORWARD_PAGE_MAX: u32 = 500;
/// How often a caught-up forwarder looks for new records.
pub const AUDIT_FORWARD_POLL_MS: u64 = 1_000;
/// Records re-sent before the saved cursor on every new connection: bytes the kernel accepted
/// before a connection failed may never have reached the collector. Sized to cover the socket's
/// whole send buffer (`AUDIT_FORWARD_SEND_BUFFER_BYTES`, which Linux doubles) even for the
/// shortest records (about 110 bytes).
pub const AUDIT_FORWARD_REPLAY_ON_RECONNECT_RECORDS: i64 = 1_000;
/// The forwarding socket's send buffer: it bounds what can be lost in flight.
pub const AUDIT_FORWARD_SEND_BUFFER_BYTES: u32 = 32 * 1024;
/// Deadlines of a connection (TCP connect plus TLS handshake) and of writing one page.
pub const AUDIT_FORWARD_CONNECT_TIMEOUT_MS: u64 = 10_000;
pub const AUDIT_FORWARD_WRITE_TIMEOUT_MS: u64 = 30_000;

// ----- security detectors and alerts -----

/// The sliding window the login detectors count in.
pub const DETECTOR_WINDOW_SECS: u64 = 300;
/// Brute force: failed logins from one IP within the window.
pub const DETECTOR_IP_FAILURES_MAX: u32 = 20;
/// Credential stuffing: distinct account names failing from one IP within the window.
pub const DETECTOR_IP_ACCOUNTS_MAX: u32 = 10;
/// Distributed guessing: distinct IPs failing on one account within the window.
pub const DETECTOR_ACCOUNT_IPS_MAX: u32 = 10;
/// Mass export: exports by one actor within the export window.
pub const DETECTOR_EXPORTS_MAX: u32 = 5;
pub const DETECTOR_EXPORT_WINDOW_SECS: u64 = 3_600;
/// Alerts waiting for the webhook; past this they are dropped (and counted), never blocking.
pub const ALERT_QUEUE_LEN_MAX: usize = 1_024;
/// Webhook deliveries are tried this many times, waiting from the first back-off doubling to the last.
pub const WEBHOOK_ATTEMPTS_MAX: u32 = 6;
pub const WEBHOOK_BACKOFF_MS_FIRST: u64 = 1_000;
pub const WEBHOOK_BACKOFF_MS_MAX: u64 = 60_000;
/// One webhook request, connect to answer.
pub const WEBHOOK_TIMEOUT_MS: u64 = 10_000;

// ----- HTTP edge (config overrides in `[limits]`) -----

/// Largest request body outside file uploads.
pub const HTTP_BODY_BYTES_MAX: usize = 64 * 1024;
/// Largest request head (request line and headers); hyper's own floor is 8 KiB.
pub const HTTP_HEADER_BYTES_MAX: usize = 16 * 1024;
/// Most headers in one request.
pub const HTTP_HEADERS_COUNT_MAX: usize = 64;
/// Hyper's own ceilings, above ours: a request between the two gets our JSON 431; only one past
/// these gets hyper's bare 431 and a closed connection.
pub const HTTP_PARSER_HEADERS_COUNT_MAX: usize = 128;
pub const HTTP_PARSER_HEAD_BYTES_MAX: usize = 64 * 1024;
/// A request that has not been answered in this time gets 408.
pub const HTTP_REQUEST_TIMEOUT_MS: u64 = 30_000;
/// A request head must arrive within this time, and an idle keep-alive connection is closed
/// after it.
pub const HTTP_IDLE_TIMEOUT_MS: u64 = 30_000;
/// The TLS handshake must finish within this time.
pub const TLS_HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
/// Open connections from one client IP.
pub const CONNECTIONS_PER_IP_MAX: u32 = 256;
/// Open connections in all.
pub const CONNECTIONS_MAX: u32 = 50_000;
/// Concurrent HTTP/2 streams on one connection.
pub const HTTP2_STREAMS_PER_CONNECTION_MAX: u32 = 64;
/// How long a stopping (draining) server waits for open requests and WebSocket goodbyes before
/// it closes what is left and exits.
pub const SHUTDOWN_DRAIN_MS: u64 = 10_000;
/// The largest PROXY protocol v2 header from a trusted proxy (addresses and TLVs), and the most
/// bytes of `X-Forwarded-For` values believed in one request.
pub const PROXY_HEADER_BYTES_MAX: usize = 1_024;
/// Most entries in `proxy.trusted`.
pub const PROXY_TRUSTED_NETS_MAX: usize = 256;
/// A node id (`node_id`): 1 to 63 characters of `[a-z0-9._-]`, starting with a letter or digit.
pub const NODE_ID_CHARS_MAX: usize = 63;
/// Longest `[cluster] subject_prefix`.
pub const CLUSTER_SUBJECT_PREFIX_CHARS_MAX: usize = 64;
/// Cluster notices waiting to go out to NATS; past it a notice is dropped (and counted): other
/// nodes then catch up from the store at the channel's next event or at their next reconnect.
pub const CLUSTER_OUTBOX_LEN: usize = 65_536;
/// Largest cluster notice read from NATS; a bigger one is ignored as foreign.
pub const CLUSTER_NOTICE_BYTES_MAX: usize = 1_024;
/// Notices taken off the bus together, so a burst costs one store read per channel.
pub const CLUSTER_BATCH_MAX: usize = 1_024;
/// Most events one node reads back from the store for one channel at a notice; a longer gap is
/// left to its connections' own catch-up, page by page.
pub const CLUSTER_BACKFILL_EVENTS_MAX: u32 = 500;
/// How often a node of a cluster compares each channel its connections listen to with the
/// channel's last `seq` in the store, and reads what it missed (a notice lost with a node that
/// died right after its commit is delivered within this).
pub const CLUSTER_SWEEP_INTERVAL_MS: u64 = 2_000;
/// Channels compared in one store read of a sweep.
pub const CLUSTER_SWEEP_CHANNELS_PER_READ: usize = 500;
/// How often the TLS certificate and key files are checked for a change.
pub const TLS_RELOAD_POLL_MS: u64 = 2_000;

// ----- sessions (config overrides in `[sessions]`) -----

/// A session unused for this long ends.
pub const SESSION_IDLE_TIMEOUT_MS: i64 = 24 * 60 * 60 * 1000;
/// A session ends this long after login, however much it is used.
pub const SESSION_LIFETIME_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// `last_seen_at` is written at most this often per session, so reads do not become writes.
pub const SESSION_TOUCH_INTERVAL_MS: i64 = 60 * 1000;
/// Most live sessions one user may hold; the oldest is ended at the next login past it.
pub const SESSIONS_PER_USER_MAX: u32 = 100;

// ----- invitations -----

/// Default and longest lifetime of an invitation.
pub const INVITATION_LIFETIME_HOURS_DEFAULT: u32 = 72;
pub const INVITATION_LIFETIME_HOURS_MAX: u32 = 30 * 24;
/// The owner enrollment link written at first start lives this long.
pub const FIRST_OWNER_INVITATION_HOURS: u32 = 7 * 24;

// ----- login throttling (config overrides in `[login]`) -----

/// Failures per account that cost nothing; from the next one on, each failure imposes a wait.
pub const LOGIN_ACCOUNT_FREE_FAILURES: u32 = 5;
/// Failures per client IP that cost nothing.
pub const LOGIN_IP_FREE_FAILURES: u32 = 20;
/// The first imposed wait; it doubles with each further failure.
pub const LOGIN_BACKOFF_MS_BASE: i64 = 1_000;
/// The longest imposed wait between attempts, before a lock.
pub const LOGIN_BACKOFF_MS_MAX: i64 = 5 * 60 * 1000;
/// Failures per account after which it is locked for `LOGIN_LOCK_MS`.
pub const LOGIN_ACCOUNT_LOCK_FAILURES: u32 = 20;
/// Failures per IP after which the IP is locked for `LOGIN_LOCK_MS`.
pub const LOGIN_IP_LOCK_FAILURES: u32 = 100;
/// How long a lock lasts.
pub const LOGIN_LOCK_MS: i64 = 15 * 60 * 1000;
/// Failures older than this (counted from the last one) are forgotten.
pub const LOGIN_FAILURE_WINDOW_MS: i64 = 60 * 60 * 1000;
/// Per-address limits key an IPv6 client on its first this-many bits (one customer's /64 is one
/// address); IPv4, and IPv4-mapped IPv6, on the whole address. `[limits] ipv6_prefix_len`.
pub const IPV6_PREFIX_LEN: u8 = 64;
/// The request budget of one client address (keyed as above) on the endpoints that need no
/// session (login, enrollment): a burst, refilled at a steady rate. Past it: 429.
pub const UNAUTHENTICATED_BURST: u32 = 60;
pub const UNAUTHENTICATED_PER_MINUTE: u32 = 60;
/// Repeated refusals of one kind (same action, reason, name and address) within this window are
/// one audit record at once and one summary with their count when the window closes.
pub const AUDIT_REFUSAL_WINDOW_MS: i64 = 60 * 1000;
/// Refusal keys aggregated at once; past it, the pending summaries are written early.
pub const AUDIT_REFUSAL_KEYS_MAX: usize = 10_000;

// ----- password hashing -----

/// Argon2id memory cost in KiB (DESIGN.md: at least 19 MiB).
pub const ARGON2_MEMORY_KIB: u32 = 19 * 1024;
/// Argon2id passes.
pub const ARGON2_ITERATIONS: u32 = 2;
/// Argon2id lanes.
pub const ARGON2_PARALLELISM: u32 = 1;
/// Password hashes waiting for a worker beyond this many are refused at once with 429, so a
/// login flood queues nothing unbounded.
pub const PASSWORD_HASH_QUEUE_MAX: usize = 64;

// ----- channels and messages -----

/// Channel names: 1 to 80 characters of `[a-z0-9][a-z0-9-_]*`.
pub const CHANNEL_NAME_CHARS_MAX: usize = 80;
/// Channel topics: 0 to 250 characters.
pub const TOPIC_CHARS_MAX: usize = 250;
/// Message bodies: 1 to 16,000 Unicode scalar values after NFC.
pub const MESSAGE_CHARS_MAX: usize = 16_000;
/// A client's idempotency key for a send.
pub const CLIENT_ID_CHARS_MAX: usize = 64;
/// Messages per history page: default and most.
pub const HISTORY_PAGE_DEFAULT: u32 = 50;
pub const HISTORY_PAGE_MAX: u32 = 200;
/// Search results per page, by default and at most.
pub const SEARCH_PAGE_DEFAULT: u32 = 20;
pub const SEARCH_PAGE_MAX: u32 = 100;
/// Most channels listed for one user.
pub const CHANNEL_LIST_MAX: u32 = 10_000;
/// Most members listed for one channel.
pub const MEMBER_LIST_MAX: u32 = 10_000;
/// Unread counts stop at this number (shown as "999+").
pub const UNREAD_COUNT_MAX: u32 = 999;
/// Messages one user may send per second, sustained, and in a burst (config `[messages]`).
pub const SEND_RATE_PER_SEC: u32 = 20;
pub const SEND_BURST: u32 = 100;

// ----- encryption at rest (config overrides in `[encryption]`) -----

/// A channel's data key is replaced by a new epoch after this many messages.
pub const DEK_EPOCH_MESSAGES_MAX: u64 = 100_000;
/// A channel's data key is replaced by a new epoch after this many days.
pub const DEK_EPOCH_DAYS_MAX: u32 = 30;
/// Data keys re-wrapped per transaction during a KEK rotation: short transactions, so sends
/// never wait long behind one.
pub const KEY_REWRAP_BATCH_MAX: u32 = 200;
/// Messages re-sealed per batch by `rampart keys reencrypt`.
pub const REENCRYPT_BATCH_MAX: u32 = 500;

// ----- configuration -----

/// Largest secret a config reference (`file:`, `credential:`, `env:`) may hold.
pub const SECRET_FILE_BYTES_MAX: usize = 64 * 1024;

// ----- real-time (config overrides in `[websocket]`) -----

/// The first `auth` frame must arrive within this time.
pub const WS_AUTH_TIMEOUT_MS: u64 = 5_000;
/// Largest frame or message a client may send.
pub const WS_FRAME_BYTES_MAX: usize = 16 * 1024;
/// Frames waiting to be written to one connection; past this the client is told to resync and
/// disconnected.
pub const WS_QUEUE_LEN_MAX: usize = 1_024;
/// The server pings this often, and closes a connection silent for `WS_IDLE_TIMEOUT_MS`.
pub const WS_PING_INTERVAL_MS: u64 = 30_000;
pub const WS_IDLE_TIMEOUT_MS: u64 = 75_000;
/// Typing notices one connection may send, at most one per this interval.
pub const WS_TYPING_INTERVAL_MS: u64 = 1_000;
/// Events read from the store per page when a connection catches up.
pub const WS_BACKFILL_PAGE: u32 = 500;
/// Channels one `resume` frame may name.
pub const WS_RESUME_CHANNELS_MAX: usize = 10_000;
/// `resume` frames one connection may send: each may replay up to 10,000 events per channel from
/// the store, so a client resumes once, right after `ready`; more get a `resume_refused` error.
pub const WS_RESUMES_PER_CONNECTION_MAX: u8 = 1;
/// Concurrent sends to one channel commit in `seq` order but may reach the hub out of it (each
/// publishes after its own commit). The hub holds an event that arrives ahead of a missing one
/// this long, so that every connection does not read the gap back from the store; a gap still
/// open then (its publisher failed, or it was committed elsewhere) is left to the connections'
/// catch-up from the store. Internal: no config override.
pub const HUB_REORDER_WAIT_MS: u64 = 50;
/// Events one channel may hold waiting for a missing one; past this they go out at once.
pub const HUB_REORDER_HELD_MAX: usize = 256;

// ----- files (config overrides in `[files]`) -----

/// Largest file one upload may carry; crossing it while streaming ends the upload with 413.
pub const FILE_BYTES_MAX: u64 = 100 * 1024 * 1024;
/// Bytes of files one user may keep stored, in all.
pub const FILE_QUOTA_BYTES_PER_USER: u64 = 2 * 1024 * 1024 * 1024;
/// A stored file name: at most this many characters after sanitizing.
pub const FILE_NAME_CHARS_MAX: usize = 200;
/// The first bytes of an upload held in memory to decide its type before any is stored.
pub const FILE_SNIFF_BYTES: usize = 64 * 1024;
/// Uploads in progress at once on one server; past this an upload gets 429 at once.
pub const FILE_UPLOADS_AT_ONCE_MAX: usize = 16;
/// Uploads one user may have in progress at once; past this that user's next upload gets 429 at
/// once (so one member cannot take every place of `FILE_UPLOADS_AT_ONCE_MAX`).
pub const FILE_UPLOADS_PER_USER_AT_ONCE_MAX: usize = 3;
/// The slowest an upload may send, averaged over each `FILE_UPLOAD_RATE_WINDOW_MS` of waiting for
/// its bytes after the first such window (a grace period): slower, it is ended (408). Only time
/// spent waiting for the client counts, never the server's own work on the bytes.
pub const FILE_UPLOAD_RATE_MIN_BYTES_PER_SEC: u64 = 1024;
pub const FILE_UPLOAD_RATE_WINDOW_MS: u64 = 10_000;
/// An upload that sends no bytes for this long is ended (408).
pub const FILE_UPLOAD_IDLE_MS: u64 = 30_000;
/// The longest an upload request may take in all (it replaces `HTTP_REQUEST_TIMEOUT_MS` there).
pub const FILE_UPLOAD_TIMEOUT_MS: u64 = 15 * 60 * 1000;
/// Files one message may carry.
pub const MESSAGE_FILES_MAX: usize = 10;
/// A file uploaded but never attached to a message is deleted after this long.
pub const FILE_UNATTACHED_TTL_MS: i64 = 24 * 60 * 60 * 1000;
/// Images larger than this many pixels are refused rather than decoded (a decompression bomb is a
/// tiny file that claims huge dimensions).
pub const IMAGE_PIXELS_MAX: u64 = 40_000_000;
/// Memory one image decode may allocate.
pub const IMAGE_ALLOC_BYTES_MAX: u64 = 512 * 1024 * 1024;
/// Images decoded and re-encoded at once; others wait their turn.
pub const IMAGE_DECODES_AT_ONCE_MAX: usize = 1;
/// Malware scanning (clamd): connecting, and waiting for the verdict once the upload has ended.
pub const CLAMD_CONNECT_TIMEOUT_MS: u64 = 5_000;
pub const CLAMD_VERDICT_TIMEOUT_MS: u64 = 120_000;
/// Longest reply read from clamd.
pub const CLAMD_REPLY_BYTES_MAX: usize = 4 * 1024;
