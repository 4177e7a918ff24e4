//! Sessions and live sockets (issue 16): `resume` is honoured once per connection.

use serde_json::json;

use crate::support::Server;

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
