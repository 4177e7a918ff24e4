//! The conformance checks for what a message body's AAD binds, as every backend must behave: a
//! row whose sender, thread or creation time was changed in the database, or whose body was put
//! back from before an edit (with its old edit counter or the current one), or moved to an older
//! AAD version, reads as failing its integrity check — body withheld, the rest of the read intact
//! — and reads again once the row is as it was. `Tamper` is the test's direct access to the
//! database, as an attacker with write access to it would have.

use async_trait::async_trait;
use rampart_core::channel::ChannelKind;
use rampart_core::validate::MessageBody;
use rampart_core::{MessageId, Role};

use crate::conformance::{make_user, NOW};
use crate::conformance_channels::{message, new_channel, post};
use crate::Backend;

/// Direct writes to the `messages` table behind the store. `column` is one of the fixed names
/// the checks use, never input.
#[async_trait]
pub trait Tamper: Send + Sync {
    async fn set_text(&self, message: &MessageId, column: &'static str, value: Option<&str>);
    async fn set_number(&self, message: &MessageId, column: &'static str, value: i64);
    /// The row's sealed body, key epoch and edit counter.
    async fn sealed(&self, message: &MessageId) -> (Vec<u8>, i64, i64);
    /// Puts a sealed body, its key epoch and an edit counter back into the row.
    async fn put_sealed(&self, message: &MessageId, body: &[u8], epoch: i64, edit_count: i64);
}

/// Whether the store reads the message as failing its integrity check (and withholds its body).
async fn refused(store: &dyn Backend, id: &MessageId) -> bool {
    let record = store.message(id).await.expect("read").expect("the row is still listed");
    assert_eq!(record.unreadable, record.body.is_none(), "a body is withheld exactly when it fails its check");
    record.unreadable
}

pub async fn run_all(store: &dyn Backend, tamper: &dyn Tamper) {
    a_changed_sender_thread_or_time_fails_the_integrity_check(store, tamper).await;
    a_body_put_back_from_before_an_edit_fails_the_integrity_check(store, tamper).await;
}

pub async fn a_changed_sender_thread_or_time_fails_the_integrity_check(store: &dyn Backend, tamper: &dyn Tamper) {
    let alice = make_user(store, Role::Member).await;
    let mallory = make_user(store, Role::Member).await;
    let channel = new_channel(store, &alice, ChannelKind::Public).await;
    let top = message(&channel, &alice, "the first thread");
    let other_top = message(&channel, &alice, "the second thread");
    post(store, &top).await;
    post(store, &other_top).await;
    let mut reply = message(&channel, &alice, "a reply in the first thread");
    reply.thread_id = Some(top.id.clone());
    post(store, &reply).await;
    let plain = message(&channel, &alice, "an ordinary message");
    post(store, &plain).await;
    for id in [&top.id, &other_top.id, &reply.id, &plain.id] {
        assert!(!refused(store, id).await, "an untouched row opens");
    }

    tamper.set_text(&plain.id, "sender_id", Some(mallory.id.as_str())).await;
    assert!(refused(store, &plain.id).await, "a changed sender is refused");
    tamper.set_text(&plain.id, "sender_id", Some(alice.id.as_str())).await;
    assert!(!refused(store, &plain.id).await, "and opens again once put back");

    tamper.set_text(&reply.id, "thread_id", Some(other_top.id.as_str())).await;
    assert!(refused(store, &reply.id).await, "a reply moved to another thread is refused");
    tamper.set_text(&reply.id, "thread_id", None).await;
    assert!(refused(store, &reply.id).await, "a reply taken out of its thread is refused");
    tamper.set_text(&plain.id, "thread_id", Some(top.id.as_str())).await;
    assert!(refused(store, &plain.id).await, "a message put into a thread is refused");
    tamper.set_text(&reply.id, "thread_id", Some(top.id.as_str())).await;
    tamper.set_text(&plain.id, "thread_id", None).await;
    assert!(!refused(store, &reply.id).await && !refused(store, &plain.id).await);

    tamper.set_number(&plain.id, "created_at", NOW.0 - 86_400_000).await;
    assert!(refused(store, &plain.id).await, "a changed creation time is refused");
    tamper.set_number(&plain.id, "created_at", NOW.0).await;

    tamper.set_number(&plain.id, "aad_version", 1).await;
    assert!(refused(store, &plain.id).await, "a row moved back to the old AAD version is refused");
    tamper.set_number(&plain.id, "aad_version", 2).await;
    assert!(!refused(store, &plain.id).await);

    // One forged row fails alone: the page around it still loads.
    tamper.set_text(&plain.id, "sender_id", Some(mallory.id.as_str())).await;
    let query = crate::HistoryQuery { before_seq: None, after_seq: Some(0), thread_id: None, limit: 50 };
    let (messages, _) = store.history(&channel.id, query).await.expect("history still answers");
    let unreadable: Vec<&MessageId> = messages.iter().filter(|m| m.unreadable).map(|m| &m.id).collect();
    assert_eq!(unreadable, [&plain.id]);
    assert!(messages.iter().filter(|m| m.id != plain.id).all(|m| m.body.is_some()));
    // Nor can the forged sender make it valid by editing it.
    let edit = MessageBody::parse("mine now").expect("body");
    assert!(store.edit_message(&plain.id, &edit, NOW).await.is_err(), "a row failing its check is not edited");
}

pub async fn a_body_put_back_from_before_an_edit_fails_the_integrity_check(store: &dyn Backend, tamper: &dyn Tamper) {
    let alice = make_user(store, Role::Member).await;
    let channel = new_channel(store, &alice, ChannelKind::Public).await;
    let original = message(&channel, &alice, "meet at noon");
    post(store, &original).await;
    let (before_edit, epoch_before, count_before) = tamper.sealed(&original.id).await;
    assert_eq!(count_before, 0);
    let edited = MessageBody::parse("meet at nine").expect("body");
    store.edit_message(&original.id, &edited, NOW).await.expect("edit").expect("edited");
    let (after_edit, epoch_after, count_after) = tamper.sealed(&original.id).await;
    assert_eq!(count_after, 1, "an edit counts");

    tamper.put_sealed(&original.id, &before_edit, epoch_before, count_before).await;
    assert!(refused(store, &original.id).await, "the pre-edit body with its old edit counter is refused");
    tamper.put_sealed(&original.id, &before_edit, epoch_before, count_after).await;
    assert!(refused(store, &original.id).await, "the pre-edit body with the current edit counter is refused");
    tamper.put_sealed(&original.id, &after_edit, epoch_after, count_after).await;
    let record = store.message(&original.id).await.expect("read").expect("exists");
    assert_eq!(record.body.as_ref().map(MessageBody::as_str), Some("meet at nine"), "the current body opens");

    // A second edit moves the counter on again, and the first edit's body is refused in turn.
    let again = MessageBody::parse("meet at ten").expect("body");
    store.edit_message(&original.id, &again, NOW).await.expect("edit").expect("edited");
    assert_eq!(tamper.sealed(&original.id).await.2, 2);
    tamper.put_sealed(&original.id, &after_edit, epoch_after, count_after).await;
    assert!(refused(store, &original.id).await, "the first edit's body with its counter is refused");
}

/// Messages for the upgrade check: a thread with a reply and an edited message. Returns the
/// channel and the texts its history must read back as, oldest first.
pub async fn messages_to_upgrade(store: &dyn Backend) -> (rampart_core::ChannelId, Vec<String>) {
    let alice = make_user(store, Role::Member).await;
    let channel = new_channel(store, &alice, ChannelKind::Private).await;
    let top = message(&channel, &alice, "before the upgrade");
    post(store, &top).await;
    let mut reply = message(&channel, &alice, "a reply before the upgrade");
    reply.thread_id = Some(top.id.clone());
    post(store, &reply).await;
    let edited = message(&channel, &alice, "to be edited");
    post(store, &edited).await;
    let body = MessageBody::parse("edited before the upgrade").expect("body");
    store.edit_message(&edited.id, &body, NOW).await.expect("edit").expect("edited");
    let texts = ["before the upgrade", "a reply before the upgrade", "edited before the upgrade"];
    (channel.id, texts.map(str::to_owned).to_vec())
}

/// Every body of `channel` opens (none refused), oldest first.
pub async fn readable_bodies(store: &dyn Backend, channel: &rampart_core::ChannelId) -> Vec<String> {
    let query = crate::HistoryQuery { before_seq: None, after_seq: Some(0), thread_id: None, limit: 200 };
    let (messages, _) = store.history(channel, query).await.expect("history");
    let mut texts = Vec::new();
    for record in messages {
        if record.unreadable {
            return vec![format!("{} failed its integrity check", record.id.as_str())];
        }
        texts.extend(record.body.map(|b| b.as_str().to_owned()));
    }
    texts
}
