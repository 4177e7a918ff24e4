//! The conformance checks for encryption at rest, as every backend must behave: bodies survive
//! epoch changes, re-encryption and KEK rotation; rotation retires the old KEK once nothing uses
//! it. The store under test must be opened with `EPOCH_MESSAGES_MAX` as its epoch limit.

use rampart_core::channel::ChannelKind;
use rampart_core::{ChannelId, Role};

use crate::conformance::{make_user, NOW};
use crate::conformance_channels::{message, new_channel, post};
use crate::model_channels::*;
use crate::{Backend, KekState};

/// The epoch limit the store under test is opened with: small, so epochs turn over quickly.
pub const EPOCH_MESSAGES_MAX: u64 = 3;
/// Batch size the checks re-wrap and re-seal with.
const BATCH: u32 = 2;

pub async fn run_all(store: &dyn Backend) {
    epochs_turn_over_and_reencryption_keeps_every_body(store).await;
    kek_rotation_rewraps_every_data_key_and_retires_the_old(store).await;
}

/// Every body in the channel, oldest first.
pub async fn bodies(store: &dyn Backend, channel: &ChannelId) -> Vec<String> {
    let query = HistoryQuery { before_seq: None, after_seq: Some(0), thread_id: None, limit: 200 };
    let (messages, _) = store.history(channel, query).await.expect("history");
    messages.iter().map(|m| m.body.as_ref().map(|b| b.as_str().to_owned()).unwrap_or_default()).collect()
}

pub async fn epochs_turn_over_and_reencryption_keeps_every_body(store: &dyn Backend) {
    let sender = make_user(store, Role::Member).await;
    let channel = new_channel(store, &sender, ChannelKind::Private).await;
    let texts: Vec<String> = (0..7).map(|i| format!("epoch message {i}")).collect();
    for text in &texts {
        post(store, &message(&channel, &sender, text)).await;
    }
    assert_eq!(bodies(store, &channel.id).await, texts, "messages across three epochs all open");
    let before = store.key_status().await.expect("status");
    assert!(before.messages_on_old_epochs >= 6, "7 messages at 3 per epoch leave 6 on old epochs: {before:?}");

    assert_eq!(store.start_epoch(Some(&channel.id), NOW).await.expect("rotate dek"), 1);
    let mut rounds = 0;
    loop {
        let progress = store.reencrypt_messages(BATCH, NOW).await.expect("reencrypt");
        assert_eq!(progress.unreadable, 0);
        rounds += 1;
        if progress.remaining == 0 || progress.resealed == 0 {
            break;
        }
        assert!(rounds < 100, "re-encryption makes progress");
    }
    assert_eq!(store.key_status().await.expect("status").messages_on_old_epochs, 0);
    assert_eq!(bodies(store, &channel.id).await, texts, "re-sealed bodies open");
}

pub async fn kek_rotation_rewraps_every_data_key_and_retires_the_old(store: &dyn Backend) {
    let sender = make_user(store, Role::Member).await;
    let channel = new_channel(store, &sender, ChannelKind::Public).await;
    post(store, &message(&channel, &sender, "before the rotation")).await;
    let old = store.key_status().await.expect("status").active_kek().expect("an active KEK");

    let new = store.begin_kek_rotation(NOW).await.expect("begin");
    assert!(new > old);
    // A message sent mid-rotation still seals and opens.
    post(store, &message(&channel, &sender, "during the rotation")).await;
    while store.rewrap_data_keys(BATCH).await.expect("rewrap") > 0 {}
    let retired = store.retire_unused_keks(NOW).await.expect("retire");
    assert!(retired.contains(&old), "the old KEK is retired: {retired:?}");

    let status = store.key_status().await.expect("status");
    assert_eq!(status.active_kek(), Some(new));
    for kek in &status.keks {
        if kek.version != new {
            assert_eq!(kek.state, KekState::Retired, "{status:?}");
            assert_eq!(kek.data_keys, 0);
        }
    }
    post(store, &message(&channel, &sender, "after the rotation")).await;
    assert_eq!(bodies(store, &channel.id).await, ["before the rotation", "during the rotation", "after the rotation"]);
}
