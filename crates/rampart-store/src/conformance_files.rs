//! The conformance checks for `FileStore`: a file's content and name round-trip through its
//! sealed blob, the per-user quota holds in the recording transaction, a file attaches only to its
//! uploader's message in its channel, and deleting the message (or leaving a file unattached past
//! the sweep) deletes the file and its blob.

use std::io::Read;

use rampart_core::channel::ChannelKind;
use rampart_core::files::{FileKind, FileName};
use rampart_core::{FileId, Role, Timestamp, UserId};

use crate::conformance::{id, make_user, NOW};
use crate::conformance_channels::{message, new_channel, post};
use crate::model::UserRecord;
use crate::model_channels::*;
use crate::{Backend, FileRecord, InsertFileOutcome, NewFile};

const QUOTA_BYTES: u64 = 1 << 30;

pub async fn run_all(store: &dyn Backend) {
    a_file_round_trips_through_its_sealed_blob(store).await;
    the_quota_holds(store).await;
    files_attach_only_to_their_uploaders_message_in_their_channel(store).await;
    deleting_the_message_deletes_its_files(store).await;
    unattached_files_are_swept(store).await;
}

/// Stores `data` as a file named `name` in `channel`, uploaded by `uploader`.
pub async fn store_file(
    store: &dyn Backend,
    channel: &ChannelRecord,
    uploader: &UserId,
    name: &str,
    data: &[u8],
    quota_bytes: u64,
    at: Timestamp,
) -> InsertFileOutcome {
    let file = FileId::from_generated(id("file"));
    let mut writer = store.create_blob(&channel.id, &file, at).await.expect("create blob");
    for piece in data.chunks(10_000) {
        writer.append(piece).expect("append");
    }
    let blob = writer.finish().expect("finish");
    let new = NewFile {
        id: file,
        channel_id: channel.id.clone(),
        uploader_id: uploader.clone(),
        name: FileName::sanitize(name).expect("name"),
        kind: FileKind::Text,
        created_at: at,
    };
    store.insert_file(&new, blob, quota_bytes).await.expect("insert file")
}

async fn stored(store: &dyn Backend, channel: &ChannelRecord, uploader: &UserRecord, data: &[u8]) -> FileRecord {
    match store_file(store, channel, &uploader.id, "notes.txt", data, QUOTA_BYTES, NOW).await {
        InsertFileOutcome::Stored(record) => record,
        other => panic!("the file was not stored: {other:?}"),
    }
}

async fn read_back(store: &dyn Backend, file: &FileRecord) -> Vec<u8> {
    let mut reader = store.open_blob(file).await.expect("open blob");
    let mut data = Vec::new();
    reader.read_to_end(&mut data).expect("read blob");
    data
}

pub async fn a_file_round_trips_through_its_sealed_blob(store: &dyn Backend) {
    let user = make_user(store, Role::Member).await;
    let channel = new_channel(store, &user, ChannelKind::Private).await;
    let data: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let record = stored(store, &channel, &user, &data).await;
    let read = store.file(&record.id).await.expect("file").expect("the file exists");
    assert_eq!(read, record, "the row reads back as written, name and digest opened");
    assert_eq!(read.size, data.len() as u64);
    assert_eq!(read.name.as_ref().map(FileName::as_str), Some("notes.txt"));
    assert!(read.sha256.is_some());
    assert_eq!(read_back(store, &read).await, data);
    let empty = stored(store, &channel, &user, b"").await;
    assert!(read_back(store, &empty).await.is_empty());
    assert_eq!(store.user_file_bytes(&user.id).await.expect("bytes"), data.len() as u64);
    assert!(store.file(&FileId::from_generated(id("nofile"))).await.expect("file").is_none());
}

pub async fn the_quota_holds(store: &dyn Backend) {
    let user = make_user(store, Role::Member).await;
    let channel = new_channel(store, &user, ChannelKind::Public).await;
    let first = store_file(store, &channel, &user.id, "a.txt", &[b'x'; 600], 1_000, NOW).await;
    assert!(matches!(first, InsertFileOutcome::Stored(_)));
    let second = store_file(store, &channel, &user.id, "b.txt", &[b'y'; 600], 1_000, NOW).await;
    assert!(matches!(second, InsertFileOutcome::QuotaExceeded { used: 600 }), "{second:?}");
    let third = store_file(store, &channel, &user.id, "c.txt", &[b'z'; 400], 1_000, NOW).await;
    assert!(matches!(third, InsertFileOutcome::Stored(_)), "exactly at the quota is allowed");
    assert_eq!(store.user_file_bytes(&user.id).await.expect("bytes"), 1_000);
}

pub async fn files_attach_only_to_their_uploaders_message_in_their_channel(store: &dyn Backend) {
    let owner = make_user(store, Role::Member).await;
    let other = make_user(store, Role::Member).await;
    let channel = new_channel(store, &owner, ChannelKind::Public).await;
    let elsewhere = new_channel(store, &owner, ChannelKind::Public).await;
    let file = stored(store, &channel, &owner, b"hello").await;

    let mut by_other = message(&channel, &other, "not yours");
    by_other.files = vec![file.id.clone()];
    assert!(matches!(store.post_message(&by_other).await.expect("post"), PostOutcome::FileNotFound));
    let mut in_other_channel = message(&elsewhere, &owner, "wrong channel");
    in_other_channel.files = vec![file.id.clone()];
    assert!(matches!(store.post_message(&in_other_channel).await.expect("post"), PostOutcome::FileNotFound));
    assert!(store.message(&by_other.id).await.expect("message").is_none(), "a refused send writes nothing");

    let mut carrying = message(&channel, &owner, "here it is");
    carrying.files = vec![file.id.clone()];
    let event = post(store, &carrying).await;
    let sent = event.message.expect("message");
    assert_eq!(sent.files.len(), 1);
    assert_eq!(sent.files[0].id, file.id);
    assert_eq!(sent.files[0].name.as_ref().map(FileName::as_str), Some("notes.txt"));
    let listed = store.message(&carrying.id).await.expect("message").expect("exists");
    assert_eq!(listed.files, sent.files, "history lists the files too");
    let replayed = store.events_after(&channel.id, event.seq - 1, 1).await.expect("events");
    assert_eq!(replayed[0].message.as_ref().map(|m| m.files.clone()), Some(sent.files.clone()));

    let mut again = message(&channel, &owner, "twice");
    again.files = vec![file.id.clone()];
    assert!(matches!(store.post_message(&again).await.expect("post"), PostOutcome::FileNotFound));
    let attached = store.file(&file.id).await.expect("file").expect("exists");
    assert_eq!(attached.message_id.as_ref(), Some(&carrying.id));
}

pub async fn deleting_the_message_deletes_its_files(store: &dyn Backend) {
    let user = make_user(store, Role::Member).await;
    let channel = new_channel(store, &user, ChannelKind::Public).await;
    let file = stored(store, &channel, &user, b"to be deleted").await;
    let mut carrying = message(&channel, &user, "with a file");
    carrying.files = vec![file.id.clone()];
    post(store, &carrying).await;
    assert!(store.open_blob(&file).await.is_ok());
    let event = store.delete_message(&carrying.id, NOW).await.expect("delete").expect("deleted");
    assert!(event.message.expect("message").files.is_empty());
    assert!(store.file(&file.id).await.expect("file").is_none(), "the row is gone");
    assert!(store.open_blob(&file).await.is_err(), "the blob is gone");
    assert_eq!(store.user_file_bytes(&user.id).await.expect("bytes"), 0, "the quota is given back");
}

pub async fn unattached_files_are_swept(store: &dyn Backend) {
    let user = make_user(store, Role::Member).await;
    let channel = new_channel(store, &user, ChannelKind::Public).await;
    let old = stored(store, &channel, &user, b"old").await;
    let kept = stored(store, &channel, &user, b"kept").await;
    let mut carrying = message(&channel, &user, "keeps one");
    carrying.files = vec![kept.id.clone()];
    post(store, &carrying).await;
    let swept = store.sweep_files(NOW.plus_ms(1), 3_600_000).await.expect("sweep");
    assert!(swept >= 1);
    assert!(store.file(&old.id).await.expect("file").is_none());
    assert!(store.open_blob(&old).await.is_err());
    assert!(store.file(&kept.id).await.expect("file").is_some(), "an attached file stays");
    assert_eq!(read_back(store, &kept).await, b"kept");
}
