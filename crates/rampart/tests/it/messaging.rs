//! Channels, messages and the live stream against the real server: chatting over WebSocket,
//! idempotent retries, threads, edit and delete rights, dense `seq` under concurrent senders,
//! read markers, and the live stream's rules (typing, resume, removed members, disabled users,
//! cross-origin handshakes, the auth deadline, oversized frames, pings and the idle deadline).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{expect_error, Dirs, Server, FRAME_WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_chat_in_real_time_and_see_edits_and_deletes() {
    let server = Server::start();
    let alice = server.user("member").await;
    let bob = server.user("member").await;
    let channel = server.channel(&alice, "public").await;
    assert_eq!(server.post_json(&bob, &format!("/api/v1/channels/{channel}/join"), json!({})).await.status(), 204);
    let (mut alice_ws, ready) = server.ws(&alice).await;
    assert_eq!(ready["user_id"], alice.id.as_str());
    assert_eq!(ready["channels"][&channel], 2, "created (1) and bob joined (2)");
    let (mut bob_ws, _) = server.ws(&bob).await;

    let sent = server
        .post_json(
            &alice,
            &format!("/api/v1/channels/{channel}/messages"),
            json!({ "body": "hello bob", "client_id": "c-1" }),
        )
        .await;
    assert_eq!(sent.status(), 201);
    let sent: Value = sent.json().await.expect("json");
    for key in ["id", "channel_id", "seq", "sender_id", "body", "thread_id", "created_at", "edited_at", "deleted"] {
        assert!(sent.get(key).is_some(), "message lacks {key}");
    }
    for ws in [&mut alice_ws, &mut bob_ws] {
        let event = ws.expect_event("message.created").await;
        assert_eq!(event["channel_id"], channel.as_str());
        assert_eq!(event["seq"], sent["seq"]);
        assert_eq!(event["data"]["body"], "hello bob");
        assert_eq!(event["data"]["client_id"], "c-1");
    }
    let id = sent["id"].as_str().expect("id");
    let edit = server
        .client()
        .patch(server.url(&format!("/api/v1/messages/{id}")))
        .headers(alice.bearer())
        .json(&json!({ "body": "hello, bob" }))
        .send()
        .await
        .expect("edit");
    assert_eq!(edit.status(), 200);
    let edited = bob_ws.expect_event("message.edited").await;
    assert_eq!(edited["data"]["body"], "hello, bob");
    assert!(edited["data"]["edited_at"].is_string());
    let delete = server
        .client()
        .delete(server.url(&format!("/api/v1/messages/{id}")))
        .headers(alice.bearer())
        .send()
        .await
        .expect("delete");
    assert_eq!(delete.status(), 204);
    let deleted = bob_ws.expect_event("message.deleted").await;
    assert_eq!(deleted["data"]["body"], Value::Null);
    assert_eq!(deleted["data"]["deleted"], true);
    let history: Value =
        server.get_json(&bob, &format!("/api/v1/channels/{channel}/messages")).await.json().await.expect("json");
    let tombstone = &history["messages"][0];
    assert_eq!(tombstone["deleted"], true);
    assert_eq!(tombstone["body"], Value::Null);
    assert_eq!(history["has_more"], false);
    // Message text never reaches the server's log.
    let log = server.log_text();
    assert!(!log.contains("hello bob") && !log.contains("hello, bob"), "message text in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_sends_return_the_first_message_and_threads_count_replies() {
    let server = Server::start();
    let alice = server.user("member").await;
    let channel = server.channel(&alice, "private").await;
    let path = format!("/api/v1/channels/{channel}/messages");
    let first: Value = server
        .post_json(&alice, &path, json!({ "body": "once", "client_id": "retry-7" }))
        .await
        .json()
        .await
        .expect("json");
    let again = server.post_json(&alice, &path, json!({ "body": "once", "client_id": "retry-7" })).await;
    assert_eq!(again.status(), 201);
    let again: Value = again.json().await.expect("json");
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["seq"], first["seq"]);
    let reply = server.post_json(&alice, &path, json!({ "body": "a reply", "thread_id": first["id"] })).await;
    assert_eq!(reply.status(), 201);
    let reply: Value = reply.json().await.expect("json");
    let nested = server.post_json(&alice, &path, json!({ "body": "nested", "thread_id": reply["id"] })).await;
    expect_error(nested, 400, "invalid_input").await;
    let history: Value = server.get_json(&alice, &format!("{path}?limit=10")).await.json().await.expect("json");
    let messages = history["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 2, "the retry wrote nothing");
    assert_eq!(messages[0]["reply_count"], 1);
    let thread: Value = server
        .get_json(&alice, &format!("{path}?thread_id={}", first["id"].as_str().expect("id")))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(thread["messages"].as_array().expect("replies").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_validated_exactly_as_the_api_says() {
    let server = Server::start();
    let alice = server.user("member").await;
    let channel = server.channel(&alice, "public").await;
    let path = format!("/api/v1/channels/{channel}/messages");
    for bad in [
        json!({ "body": "" }),
        json!({ "body": "nul\u{0}" }),
        json!({ "body": "x".repeat(16_001) }),
        json!({ "body": "bell\u{7}" }),
    ] {
        expect_error(server.post_json(&alice, &path, bad).await, 400, "invalid_input").await;
    }
    let longest = server.post_json(&alice, &path, json!({ "body": "é".repeat(16_000) })).await;
    assert_eq!(longest.status(), 201);
    let nfc: Value =
        server.post_json(&alice, &path, json!({ "body": "cafe\u{301}\tok\nline" })).await.json().await.expect("json");
    assert_eq!(nfc["body"], "caf\u{e9}\tok\nline");
    expect_error(server.post_json(&alice, &path, json!({ "body": "hi", "extra": 1 })).await, 400, "unknown_field")
        .await;
    let bad_name = server.post_json(&alice, "/api/v1/channels", json!({ "name": "Bad Name", "kind": "public" })).await;
    expect_error(bad_name, 400, "invalid_input").await;
    let dup =
        server.get_json(&alice, &format!("/api/v1/channels/{channel}")).await.json::<Value>().await.expect("json");
    let taken = server.post_json(&alice, "/api/v1/channels", json!({ "name": dup["name"], "kind": "public" })).await;
    expect_error(taken, 409, "conflict").await;
}

/// Issue 16 item 3: a private channel's name is not probed by a collision. An outsider who creates
/// or renames a channel to the name of a private channel they cannot see gets what a free name
/// gets; a public name, which everyone can see, still collides (409).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hidden_private_channels_name_answers_as_a_free_name_would() {
    let server = Server::start();
    let insider = server.user("member").await;
    let outsider = server.user("member").await;
    let name_of = |id: String| {
        let server = &server;
        let insider = &insider;
        async move {
            let channel: Value =
                server.get_json(insider, &format!("/api/v1/channels/{id}")).await.json().await.expect("json");
            channel["name"].clone()
        }
    };
    let rename = |id: String, name: Value| {
        let request = server.client().patch(server.url(&format!("/api/v1/channels/{id}"))).headers(outsider.bearer());
        async move { request.json(&json!({ "name": name })).send().await.expect("patch") }
    };
    let hidden = server.channel(&insider, "private").await;
    let hidden_name = name_of(hidden.clone()).await;
    let free_name = json!(crate::support::unique("free"));
    for (kind, name) in [("public", &hidden_name), ("private", &hidden_name), ("public", &free_name)] {
        let created = server.post_json(&outsider, "/api/v1/channels", json!({ "name": name, "kind": kind })).await;
        let status = created.status();
        let body: Value = created.json().await.expect("json");
        assert_eq!(status, 201, "{kind} {name}: {body}");
        assert_eq!(body["name"], *name);
        assert_ne!(body["id"], hidden.as_str());
    }
    // Renaming: to another hidden channel's name, as to a free one.
    let hidden_name_too = name_of(server.channel(&insider, "private").await).await;
    for kind in ["private", "public"] {
        let renamed = rename(server.channel(&outsider, kind).await, hidden_name_too.clone()).await;
        assert_eq!(renamed.status(), 200, "{kind}: {}", renamed.text().await.unwrap_or_default());
    }
    // The insider's channel is untouched and still answers by its id.
    assert_eq!(name_of(hidden).await, hidden_name);
    // A public name collides, for creation and for renaming, as before.
    let public_name = name_of(server.channel(&insider, "public").await).await;
    let clash = server.post_json(&outsider, "/api/v1/channels", json!({ "name": public_name, "kind": "public" })).await;
    expect_error(clash, 409, "conflict").await;
    let rename_clash = rename(server.channel(&outsider, "public").await, public_name).await;
    expect_error(rename_clash, 409, "conflict").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_senders_leave_seq_dense_and_the_stream_in_order() {
    let server = Arc::new(Server::start());
    let owner = server.user("member").await;
    let channel = server.channel(&owner, "public").await;
    let mut senders = Vec::new();
    for _ in 0..4 {
        let user = server.user("member").await;
        assert_eq!(server.post_json(&user, &format!("/api/v1/channels/{channel}/join"), json!({})).await.status(), 204);
        senders.push(user);
    }
    let (mut watcher, ready) = server.ws(&owner).await;
    let start_seq = ready["channels"][&channel].as_i64().expect("seq");
    let per_sender = 20;
    let mut tasks = Vec::new();
    for user in senders {
        let server = Arc::clone(&server);
        let channel = channel.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per_sender {
                server.say(&user, &channel, &format!("{} says {i}", user.username)).await;
            }
        }));
    }
    for task in tasks {
        task.await.expect("sender");
    }
    let total = 4 * per_sender;
    let mut seen = Vec::new();
    while seen.len() < total {
        let event = watcher.expect_event("message.created").await;
        seen.push(event["seq"].as_i64().expect("seq"));
    }
    let expected: Vec<i64> = (start_seq + 1..=start_seq + total as i64).collect();
    assert_eq!(seen, expected, "every event once, in seq order, no gap");
    let history: Value = server
        .get_json(&owner, &format!("/api/v1/channels/{channel}/messages?limit=200"))
        .await
        .json()
        .await
        .expect("json");
    let seqs: Vec<i64> =
        history["messages"].as_array().expect("messages").iter().map(|m| m["seq"].as_i64().expect("seq")).collect();
    assert_eq!(seqs, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_drops_at_random_and_resumes_gets_every_event_exactly_once() {
    use rand::{Rng, SeedableRng};
    let server = Arc::new(Server::start());
    let sender = server.user("member").await;
    let reader = server.user("member").await;
    let channel = server.channel(&sender, "public").await;
    assert_eq!(server.post_json(&reader, &format!("/api/v1/channels/{channel}/join"), json!({})).await.status(), 204);
    let total = 60i64;
    let writer = {
        let server = Arc::clone(&server);
        let channel = channel.clone();
        tokio::spawn(async move {
            for i in 0..total {
                server.say(&sender, &channel, &format!("message {i}")).await;
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        })
    };
    // Several random schedules: read a few events, drop, reconnect with `resume`.
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let mut seen: Vec<i64> = Vec::new();
    let mut cursor = 0i64;
    let mut messages = 0;
    while messages < total {
        let (mut ws, _) = server.ws(&reader).await;
        ws.send(json!({ "type": "resume", "cursors": { channel.as_str(): cursor } })).await;
        let take = rng.gen_range(1..=12);
        for _ in 0..take {
            let Some(frame) = ws.next_within(Duration::from_secs(5)).await else { break };
            if frame["type"] != "event" {
                continue;
            }
            let seq = frame["seq"].as_i64().expect("seq");
            assert!(seq > cursor, "duplicate or out of order: {seq} after {cursor}");
            assert_eq!(seq, cursor + 1, "gap: {seq} after {cursor}");
            cursor = seq;
            seen.push(seq);
            if frame["kind"] == "message.created" {
                messages += 1;
            }
        }
        drop(ws);
        if rng.gen_bool(0.5) {
            tokio::time::sleep(Duration::from_millis(rng.gen_range(0..120))).await;
        }
    }
    writer.await.expect("writer");
    let unique: HashSet<i64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len());
    assert_eq!(seen, (1..=cursor).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_members_see_nothing_of_a_private_channel() {
    let server = Server::start();
    let owner = server.user("member").await;
    let outsider = server.user("member").await;
    let guest = server.user("guest").await;
    let admin = server.user("admin").await;
    let private = server.channel(&owner, "private").await;
    let message = server.say(&owner, &private, "private words").await;
    let message_id = message["id"].as_str().expect("id");
    let client = server.client();
    for user in [&outsider, &guest, &admin] {
        let requests = vec![
            client.get(server.url(&format!("/api/v1/channels/{private}"))),
            client.get(server.url(&format!("/api/v1/channels/{private}/messages"))),
            client.get(server.url(&format!("/api/v1/channels/{private}/members"))),
            client.post(server.url(&format!("/api/v1/channels/{private}/messages"))).json(&json!({ "body": "hi" })),
            client.post(server.url(&format!("/api/v1/channels/{private}/join"))).json(&json!({})),
            client.post(server.url(&format!("/api/v1/channels/{private}/leave"))).json(&json!({})),
            client
                .post(server.url(&format!("/api/v1/channels/{private}/members")))
                .json(&json!({ "user_id": user.id })),
            client.delete(server.url(&format!("/api/v1/channels/{private}/members/{}", owner.id))),
            client.patch(server.url(&format!("/api/v1/channels/{private}"))).json(&json!({ "topic": "mine now" })),
            client.post(server.url(&format!("/api/v1/channels/{private}/read"))).json(&json!({ "seq": 1 })),
            client.patch(server.url(&format!("/api/v1/messages/{message_id}"))).json(&json!({ "body": "edited" })),
            client.delete(server.url(&format!("/api/v1/messages/{message_id}"))),
        ];
        for request in requests {
            let response = request.headers(user.bearer()).send().await.expect("send");
            let what = format!("{} {}", response.url(), user.username);
            let body = expect_error(response, 404, "not_found").await;
            assert!(!body.to_string().contains("private words"), "{what}");
        }
        let listed: Vec<Value> = server.get_json(user, "/api/v1/channels").await.json().await.expect("json");
        assert!(listed.iter().all(|c| c["id"] != private.as_str()));
    }
    // A public channel: visible to members, but reading and posting need joining; guests do
    // not see it at all.
    let public = server.channel(&owner, "public").await;
    assert_eq!(server.get_json(&outsider, &format!("/api/v1/channels/{public}")).await.status(), 200);
    expect_error(server.get_json(&outsider, &format!("/api/v1/channels/{public}/messages")).await, 403, "forbidden")
        .await;
    let post =
        server.post_json(&outsider, &format!("/api/v1/channels/{public}/messages"), json!({ "body": "hi" })).await;
    expect_error(post, 403, "forbidden").await;
    expect_error(server.get_json(&guest, &format!("/api/v1/channels/{public}")).await, 404, "not_found").await;
    let guest_join = server.post_json(&guest, &format!("/api/v1/channels/{public}/join"), json!({})).await;
    expect_error(guest_join, 404, "not_found").await;
    let guest_create =
        server.post_json(&guest, "/api/v1/channels", json!({ "name": "guest-room", "kind": "public" })).await;
    expect_error(guest_create, 403, "forbidden").await;
    // The message itself is also not found by id for outsiders.
    let (mut outsider_ws, ready) = server.ws(&outsider).await;
    assert!(ready["channels"].get(&private).is_none());
    server.say(&owner, &private, "more private words").await;
    assert!(outsider_ws.next_within(Duration::from_millis(500)).await.is_none(), "no event leaks to a non-member");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_are_the_senders_and_deletes_the_sender_or_a_moderator() {
    let server = Server::start();
    let alice = server.user("member").await;
    let bob = server.user("member").await;
    let admin = server.user("admin").await;
    let channel = server.channel(&alice, "public").await;
    for user in [&bob, &admin] {
        assert_eq!(server.post_json(user, &format!("/api/v1/channels/{channel}/join"), json!({})).await.status(), 204);
    }
    let mine = server.say(&bob, &channel, "bob's words").await;
    let id = mine["id"].as_str().expect("id");
    let edit = |user: &crate::support::User| {
        server
            .client()
            .patch(server.url(&format!("/api/v1/messages/{id}")))
            .headers(user.bearer())
            .json(&json!({ "body": "changed" }))
            .send()
    };
    expect_error(edit(&alice).await.expect("edit"), 403, "forbidden").await;
    expect_error(edit(&admin).await.expect("edit"), 403, "forbidden").await;
    assert_eq!(edit(&bob).await.expect("edit").status(), 200);
    let other = server.say(&alice, &channel, "alice's words").await;
    let delete = |user: &crate::support::User, id: &str| {
        server.client().delete(server.url(&format!("/api/v1/messages/{id}"))).headers(user.bearer()).send()
    };
    expect_error(delete(&bob, other["id"].as_str().expect("id")).await.expect("delete"), 403, "forbidden").await;
    // The channel admin (its creator) and a server admin may delete others' messages; audited.
    assert_eq!(delete(&alice, id).await.expect("delete").status(), 204);
    assert_eq!(delete(&admin, other["id"].as_str().expect("id")).await.expect("delete").status(), 204);
    let owner = server.user("owner").await;
    let audit: Vec<Value> = server.get_json(&owner, "/api/v1/admin/audit?limit=1000").await.json().await.expect("json");
    assert_eq!(audit.iter().filter(|r| r["action"] == "message.deleted_by_moderator").count(), 2);
    assert!(audit.iter().all(|r| !r.to_string().contains("words")), "no message text in the audit log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_stops_receiving_at_once() {
    let server = Server::start();
    let alice = server.user("member").await;
    let bob = server.user("member").await;
    let channel = server.channel(&alice, "private").await;
    assert_eq!(
        server
            .post_json(&alice, &format!("/api/v1/channels/{channel}/members"), json!({ "user_id": bob.id }))
            .await
            .status(),
        204
    );
    let (mut bob_ws, ready) = server.ws(&bob).await;
    assert!(ready["channels"].get(&channel).is_some());
    server.say(&alice, &channel, "before").await;
    assert_eq!(bob_ws.expect_event("message.created").await["data"]["body"], "before");
    let removed = server
        .client()
        .delete(server.url(&format!("/api/v1/channels/{channel}/members/{}", bob.id)))
        .headers(alice.bearer())
        .send()
        .await
        .expect("remove");
    assert_eq!(removed.status(), 204);
    let left = bob_ws.expect_event("member.left").await;
    assert_eq!(left["data"]["user_id"], bob.id.as_str());
    server.say(&alice, &channel, "after").await;
    assert!(bob_ws.next_within(Duration::from_millis(700)).await.is_none(), "nothing after removal");
    expect_error(server.get_json(&bob, &format!("/api/v1/channels/{channel}/messages")).await, 404, "not_found").await;
    // Added again: the live socket picks the channel up from its own join.
    assert_eq!(
        server
            .post_json(&alice, &format!("/api/v1/channels/{channel}/members"), json!({ "user_id": bob.id }))
            .await
            .status(),
        204
    );
    let joined = bob_ws.expect_event("member.joined").await;
    assert_eq!(joined["data"]["channel"]["id"], channel.as_str());
    server.say(&alice, &channel, "welcome back").await;
    assert_eq!(bob_ws.expect_event("message.created").await["data"]["body"], "welcome back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_users_and_revoked_sessions_lose_their_sockets() {
    let server = Server::start();
    let admin = server.user("admin").await;
    let bob = server.user("member").await;
    let (mut ws, _) = server.ws(&bob).await;
    let disable = server
        .client()
        .patch(server.url(&format!("/api/v1/admin/users/{}", bob.id)))
        .headers(admin.bearer())
        .json(&json!({ "disabled": true }))
        .send()
        .await
        .expect("disable");
    assert_eq!(disable.status(), 200);
    let (frames, closed) = ws.drain_until_closed(Duration::from_secs(5)).await;
    assert!(closed, "the socket closes");
    assert!(frames.iter().any(|f| f["type"] == "error" && f["code"] == "unauthenticated"), "{frames:?}");
    // Logout closes the sockets of that session.
    let carol = server.user("member").await;
    let (mut ws, _) = server.ws(&carol).await;
    let logout =
        server.client().post(server.url("/api/v1/auth/logout")).headers(carol.bearer()).send().await.expect("logout");
    assert_eq!(logout.status(), 204);
    let (_, closed) = ws.drain_until_closed(Duration::from_secs(5)).await;
    assert!(closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_need_our_origin_and_a_prompt_auth_frame() {
    let server = Server::start();
    let user = server.user("member").await;
    let evil = server
        .ws_with(&[("origin", "https://evil.example".to_owned()), ("authorization", format!("Bearer {}", user.token))])
        .await;
    match evil {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("a cross-origin handshake must be refused"),
    }
    // Cookie authentication at the handshake, same origin: ready at once.
    let cookie = format!("__Host-rampart_session={}", user.token);
    let mut ws = server.ws_with(&[("origin", server.origin()), ("cookie", cookie)]).await.expect("connect");
    assert_eq!(ws.expect("ready").await["user_id"], user.id.as_str());
    // A bad token in the first frame: an error frame and a close.
    let mut ws = server.ws_with(&[("origin", server.origin())]).await.expect("connect");
    ws.send(json!({ "type": "auth", "token": "not-a-token" })).await;
    let (frames, closed) = ws.drain_until_closed(Duration::from_secs(5)).await;
    assert!(closed && frames.iter().any(|f| f["code"] == "unauthenticated"), "{frames:?}");
    // Silence: closed after the 5 s deadline.
    let mut ws = server.ws_with(&[("origin", server.origin())]).await.expect("connect");
    let (_, closed) = ws.drain_until_closed(Duration::from_secs(8)).await;
    assert!(closed, "an unauthenticated socket is closed after the deadline");
    // A frame over the limit closes the connection.
    let (mut ws, _) = server.ws(&user).await;
    let huge = json!({ "type": "typing", "channel_id": "x".repeat(64 * 1024) }).to_string();
    let _ = ws.send_raw(tokio_tungstenite::tungstenite::Message::Text(huge.into())).await;
    let (_, closed) = ws.drain_until_closed(Duration::from_secs(5)).await;
    assert!(closed, "an oversized frame ends the connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_answers_pings_stays_and_a_silent_one_is_closed_as_idle() {
    let config = "[websocket]\nping_interval_ms = 100\nidle_timeout_ms = 400\n";
    let server = Server::start_with(Arc::new(Dirs::new()), config, &[]);
    let alice = server.user("member").await;
    let bob = server.user("member").await;
    let channel = server.channel(&alice, "public").await;
    assert_eq!(server.post_json(&bob, &format!("/api/v1/channels/{channel}/join"), json!({})).await.status(), 204);
    let (mut silent, _) = server.ws(&alice).await;
    let (mut lively, _) = server.ws(&bob).await;
    // Bob reads (and so answers pings) for three idle timeouts; Alice reads nothing meanwhile.
    assert_eq!(lively.close_within(Duration::from_millis(1_200)).await, None, "a client that answers stays");
    assert_eq!(silent.close_within(FRAME_WAIT).await, Some((1008, "idle".to_owned())));
    server.say(&alice, &channel, "still there?").await;
    assert_eq!(lively.expect_event("message.created").await["data"]["body"], "still there?");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_notices_are_ephemeral_and_members_only() {
    let server = Server::start();
    let alice = server.user("member").await;
    let bob = server.user("member").await;
    let outsider = server.user("member").await;
    let channel = server.channel(&alice, "private").await;
    assert_eq!(
        server
            .post_json(&alice, &format!("/api/v1/channels/{channel}/members"), json!({ "user_id": bob.id }))
            .await
            .status(),
        204
    );
    let (mut alice_ws, _) = server.ws(&alice).await;
    let (mut bob_ws, _) = server.ws(&bob).await;
    let (mut outsider_ws, _) = server.ws(&outsider).await;
    alice_ws.send(json!({ "type": "typing", "channel_id": channel })).await;
    let notice = bob_ws.expect("typing").await;
    assert_eq!(notice["user_id"], alice.id.as_str());
    assert!(notice.get("seq").is_none());
    // An outsider cannot type into the channel.
    outsider_ws.send(json!({ "type": "typing", "channel_id": channel })).await;
    assert!(bob_ws.next_within(Duration::from_millis(500)).await.is_none());
    alice_ws.send(json!({ "type": "dance" })).await;
    assert_eq!(alice_ws.expect("error").await["code"], "invalid_input");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_told_to_resync_and_memory_stays_bounded() {
    // The idle timeout is far away: on a loaded machine the sends can outlast the default while
    // Bob reads nothing, and this test is about the lag path.
    let config = "[websocket]\nqueue_len_max = 8\nidle_timeout_ms = 600000\n[messages]\nsend_rate_per_sec = 100000\nsend_burst = 100000\n";
    let server = Arc::new(Server::start_with(Arc::new(Dirs::new()), config, &[]));
    let alice = server.user("member").await;
    let bob = server.user("member").await;
    let channel = server.channel(&alice, "public").await;
    assert_eq!(server.post_json(&bob, &format!("/api/v1/channels/{channel}/join"), json!({})).await.status(), 204);
    let (mut slow, _) = server.ws(&bob).await;
    let before = server.rss_kib();
    // Bob reads nothing while ~30 MB of messages flow.
    let body = "z".repeat(15_000);
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let server = Arc::clone(&server);
        let alice = alice.clone();
        let channel = channel.clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..500 {
                server
                    .post_json(&alice, &format!("/api/v1/channels/{channel}/messages"), json!({ "body": body }))
                    .await;
            }
        }));
    }
    for task in tasks {
        task.await.expect("sender");
    }
    let after = server.rss_kib();
    let (frames, closed) = slow.drain_until_closed(Duration::from_secs(20)).await;
    assert!(closed, "the slow consumer is disconnected");
    assert!(
        frames.iter().any(|f| f["type"] == "resync" && f["channel_id"] == channel.as_str()),
        "a resync frame arrives before the close"
    );
    assert!(frames.len() < 2_000, "not every message was queued for the slow client");
    assert!(after < before + 64 * 1024, "server RSS grew from {before} KiB to {after} KiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_messages_read_markers_and_send_rate_limits() {
    let config = "[messages]\nsend_rate_per_sec = 1\nsend_burst = 5\n";
    let server = Server::start_with(Arc::new(Dirs::new()), config, &[]);
    let alice = server.user("member").await;
    let bob = server.user("guest").await;
    let first = server.post_json(&alice, "/api/v1/dms", json!({ "user_id": bob.id })).await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.expect("json");
    assert_eq!(first["kind"], "dm");
    let again = server.post_json(&bob, "/api/v1/dms", json!({ "user_id": alice.id })).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().await.expect("json")["id"], first["id"]);
    let dm = first["id"].as_str().expect("id");
    for i in 0..3 {
        server.say(&alice, dm, &format!("note {i}")).await;
    }
    let listing: Vec<Value> = server.get_json(&bob, "/api/v1/channels").await.json().await.expect("json");
    let entry = listing.iter().find(|c| c["id"] == dm).expect("dm listed");
    assert_eq!(entry["unread"], 3);
    assert_eq!(entry["dm_user_id"], alice.id.as_str());
    let last = entry["last_seq"].as_i64().expect("seq");
    assert_eq!(
        server.post_json(&bob, &format!("/api/v1/channels/{dm}/read"), json!({ "seq": last })).await.status(),
        204
    );
    let listing: Vec<Value> = server.get_json(&bob, "/api/v1/channels").await.json().await.expect("json");
    assert_eq!(listing.iter().find(|c| c["id"] == dm).expect("dm")["unread"], 0);
    // Leaving a DM is refused; a DM with a missing user is not found.
    expect_error(server.post_json(&bob, &format!("/api/v1/channels/{dm}/leave"), json!({})).await, 403, "forbidden")
        .await;
    expect_error(
        server.post_json(&alice, "/api/v1/dms", json!({ "user_id": "00000000-0000-4000-8000-000000000000" })).await,
        404,
        "not_found",
    )
    .await;
    // Burst of 5 with 3 already spent: the 3rd more is refused with Retry-After.
    let mut limited = None;
    for i in 0..5 {
        let response = server
            .post_json(&alice, &format!("/api/v1/channels/{dm}/messages"), json!({ "body": format!("fast {i}") }))
            .await;
        if response.status() == 429 {
            limited = Some(response);
            break;
        }
    }
    let limited = limited.expect("rate limited");
    assert!(limited.headers().get("retry-after").is_some());
    expect_error(limited, 429, "too_many_requests").await;
}
