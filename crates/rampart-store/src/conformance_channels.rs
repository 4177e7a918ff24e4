//! The conformance checks for `ChannelStore`: channels, membership, messages, the event log's
//! dense `seq` under concurrent writers, history paging and read markers.

use rampart_core::channel::{ChannelKind, ChannelRole, EventKind};
use rampart_core::validate::{ChannelName, ClientId, MessageBody, Topic};
use rampart_core::{ChannelId, MessageId, Role, Timestamp};

use crate::conformance::{id, make_user, unique, NOW};
use crate::model::UserRecord;
use crate::model_channels::*;
use crate::Backend;

pub async fn run_all(store: &dyn Backend) {
    channel_creation_and_names(store).await;
    messages_threads_and_idempotency(store).await;
    edits_and_deletes_rewrite_the_log(store).await;
    concurrent_posts_keep_seq_dense(store).await;
    history_pages_both_ways(store).await;
    membership_events_and_listing(store).await;
    direct_channels_are_one_per_pair(store).await;
    channel_heads_are_the_last_seqs(store).await;
    private_names_are_not_a_namespace_to_probe(store).await;
}

fn named(creator: &UserRecord, kind: ChannelKind, name: &ChannelName) -> NewChannel {
    NewChannel {
        id: ChannelId::from_generated(id("chan")),
        kind,
        name: name.clone(),
        topic: Topic::default(),
        created_by: creator.id.clone(),
        created_at: NOW,
    }
}

fn created(outcome: CreateChannelOutcome) -> ChannelRecord {
    match outcome {
        CreateChannelOutcome::Created(record, _) => *record,
        other => panic!("not created: {other:?}"),
    }
}

/// Issue 16 item 3: names are unique among public channels only (everyone can see those). A
/// private channel's name collides with nothing, so no one learns by a refusal that a private
/// channel of that name exists: private channels of the same name (anyone's), and a public and
/// a private one of the same name, live side by side, told apart by id.
pub async fn private_names_are_not_a_namespace_to_probe(store: &dyn Backend) {
    let insider = make_user(store, Role::Member).await;
    let outsider = make_user(store, Role::Member).await;
    let hidden = new_channel(store, &insider, ChannelKind::Private).await;
    let name = hidden.name.clone().expect("name");
    let mut ids = vec![hidden.id.clone()];
    for (creator, kind) in
        [(&outsider, ChannelKind::Private), (&insider, ChannelKind::Private), (&outsider, ChannelKind::Public)]
    {
        let record = created(store.create_channel(&named(creator, kind, &name)).await.expect("create"));
        assert_eq!(record.name.as_ref(), Some(&name));
        ids.push(record.id);
    }
    // The public one now holds the name among public channels.
    let clash = named(&outsider, ChannelKind::Public, &name);
    assert_eq!(store.create_channel(&clash).await.expect("create"), CreateChannelOutcome::NameTaken);
    ids.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    ids.dedup();
    assert_eq!(ids.len(), 4, "four channels of one name, each its own");
    // Renaming: a private channel to any name; a public one to a private channel's name, but not
    // to a public one's.
    let private_name = new_channel(store, &insider, ChannelKind::Private).await.name.expect("name");
    let to = |name: &ChannelName| ChannelChange { name: Some(name.clone()), ..ChannelChange::default() };
    let mine = new_channel(store, &outsider, ChannelKind::Private).await;
    for target in [&name, &private_name] {
        match store.update_channel(&mine.id, &to(target), NOW).await.expect("rename") {
            UpdateOutcome::Updated(event) => assert_eq!(event.channel.expect("channel").name.as_ref(), Some(target)),
            other => panic!("a private channel may take any name: {other:?}"),
        }
    }
    let public = new_channel(store, &outsider, ChannelKind::Public).await;
    assert!(matches!(
        store.update_channel(&public.id, &to(&private_name), NOW).await.expect("rename"),
        UpdateOutcome::Updated(_)
    ));
    assert!(matches!(
        store.update_channel(&public.id, &to(&name), NOW).await.expect("rename"),
        UpdateOutcome::NameTaken
    ));
    // Keeping its own name is no clash.
    assert!(matches!(
        store.update_channel(&public.id, &to(&private_name), NOW).await.expect("rename"),
        UpdateOutcome::Updated(_)
    ));
}

pub async fn channel_heads_are_the_last_seqs(store: &dyn Backend) {
    let creator = make_user(store, Role::Member).await;
    let (a, b) = (
        new_channel(store, &creator, ChannelKind::Public).await,
        new_channel(store, &creator, ChannelKind::Public).await,
    );
    let posted = match store.post_message(&message(&a, &creator, "hello")).await.expect("post") {
        PostOutcome::Created(event) => event.seq,
        other => panic!("post failed: {other:?}"),
    };
    let missing = ChannelId::from_generated(id("chan"));
    let mut heads = store.channel_heads(&[a.id.clone(), b.id.clone(), missing]).await.expect("heads");
    heads.sort_by(|x, y| x.0.as_str().cmp(y.0.as_str()));
    let b_last = store.events_after(&b.id, 0, 100).await.expect("events").last().map_or(0, |e| e.seq);
    let mut expected = vec![(a.id.clone(), posted), (b.id.clone(), b_last)];
    expected.sort_by(|x, y| x.0.as_str().cmp(y.0.as_str()));
    assert_eq!(heads, expected, "existing channels only, each with its last seq");
    assert!(store.channel_heads(&[]).await.expect("none").is_empty());
}

pub(crate) async fn new_channel(store: &dyn Backend, creator: &UserRecord, kind: ChannelKind) -> ChannelRecord {
    let channel = NewChannel {
        id: ChannelId::from_generated(id("chan")),
        kind,
        name: ChannelName::parse(&unique("c").to_lowercase()).expect("name"),
        topic: Topic::parse("a topic").expect("topic"),
        created_by: creator.id.clone(),
        created_at: NOW,
    };
    match store.create_channel(&channel).await.expect("create") {
        CreateChannelOutcome::Created(record, _) => *record,
        other => panic!("create failed: {other:?}"),
    }
}

pub(crate) fn message(channel: &ChannelRecord, sender: &UserRecord, text: &str) -> NewMessage {
    NewMessage {
        id: MessageId::from_generated(id("msg")),
        channel_id: channel.id.clone(),
        sender_id: sender.id.clone(),
        body: MessageBody::parse(text).expect("body"),
        thread_id: None,
        client_id: None,
        created_at: NOW,
        files: Vec::new(),
    }
}

pub(crate) async fn post(store: &dyn Backend, new: &NewMessage) -> EventRecord {
    match store.post_message(new).await.expect("post") {
        PostOutcome::Created(event) => event,
        other => panic!("post failed: {other:?}"),
    }
}

pub async fn channel_creation_and_names(store: &dyn Backend) {
    let creator = make_user(store, Role::Member).await;
    let channel = new_channel(store, &creator, ChannelKind::Public).await;
    assert_eq!(channel.last_seq, 1, "creation writes member.joined as event 1");
    assert_eq!(store.membership(&channel.id, &creator.id).await.expect("membership"), Some(ChannelRole::Admin));
    let (found, role) = store.channel_for(&channel.id, &creator.id).await.expect("channel_for").expect("exists");
    assert_eq!((found.id, role), (channel.id.clone(), Some(ChannelRole::Admin)));
    let stranger = make_user(store, Role::Member).await;
    let (_, none) = store.channel_for(&channel.id, &stranger.id).await.expect("channel_for").expect("exists");
    assert_eq!(none, None);
    let events = store.events_after(&channel.id, 0, 10).await.expect("events");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EventKind::MemberJoined);
    assert_eq!(events[0].user_id.as_ref(), Some(&creator.id));
    let clash = named(&creator, ChannelKind::Public, channel.name.as_ref().expect("name"));
    assert_eq!(store.create_channel(&clash).await.expect("create"), CreateChannelOutcome::NameTaken);
    let other = new_channel(store, &creator, ChannelKind::Public).await;
    let rename = ChannelChange { name: channel.name.clone(), ..ChannelChange::default() };
    assert!(matches!(store.update_channel(&other.id, &rename, NOW).await.expect("update"), UpdateOutcome::NameTaken));
    let other = new_channel(store, &creator, ChannelKind::Private).await;
    let archive = ChannelChange {
        archived: Some(true),
        topic: Some(Topic::parse("new").expect("topic")),
        ..ChannelChange::default()
    };
    match store.update_channel(&other.id, &archive, NOW).await.expect("update") {
        UpdateOutcome::Updated(event) => {
            assert_eq!(event.kind, EventKind::ChannelUpdated);
            let record = event.channel.expect("channel");
            assert!(record.archived);
            assert_eq!(record.topic.as_str(), "new");
        }
        other => panic!("{other:?}"),
    }
    let ghost = ChannelId::from_generated(id("ghost"));
    assert!(matches!(store.update_channel(&ghost, &archive, NOW).await.expect("update"), UpdateOutcome::NotFound));
    assert!(store.channel(&ghost).await.expect("channel").is_none());
}

pub async fn messages_threads_and_idempotency(store: &dyn Backend) {
    let user = make_user(store, Role::Member).await;
    let channel = new_channel(store, &user, ChannelKind::Public).await;
    let mut first = message(&channel, &user, "hello");
    first.client_id = Some(ClientId::parse("retry-1").expect("client id"));
    let created = post(store, &first).await;
    assert_eq!(created.seq, 2);
    // A retry with the same client id returns the first message, writes no event.
    let mut retry = message(&channel, &user, "hello again");
    retry.client_id = first.client_id.clone();
    match store.post_message(&retry).await.expect("post") {
        PostOutcome::Duplicate(original) => assert_eq!(original.id, first.id),
        other => panic!("{other:?}"),
    }
    assert_eq!(store.channel(&channel.id).await.expect("channel").expect("exists").last_seq, 2);
    // Replies count on their parent; a reply cannot be a parent.
    let mut reply = message(&channel, &user, "a reply");
    reply.thread_id = Some(first.id.clone());
    let reply_event = post(store, &reply).await;
    let parent = store.message(&first.id).await.expect("message").expect("exists");
    assert_eq!(parent.reply_count, 1);
    let mut nested = message(&channel, &user, "nested");
    nested.thread_id = Some(reply.id.clone());
    assert!(matches!(store.post_message(&nested).await.expect("post"), PostOutcome::ThreadNotFound));
    // A thread in another channel is not found here.
    let elsewhere = new_channel(store, &user, ChannelKind::Public).await;
    let mut cross = message(&elsewhere, &user, "cross");
    cross.thread_id = Some(first.id.clone());
    assert!(matches!(store.post_message(&cross).await.expect("post"), PostOutcome::ThreadNotFound));
    assert_eq!(reply_event.message.expect("message").thread_id, Some(first.id));
}

pub async fn edits_and_deletes_rewrite_the_log(store: &dyn Backend) {
    let user = make_user(store, Role::Member).await;
    let channel = new_channel(store, &user, ChannelKind::Public).await;
    let new = message(&channel, &user, "secret plan");
    post(store, &new).await;
    let edited = store
        .edit_message(&new.id, &MessageBody::parse("revised plan").expect("body"), NOW.plus_ms(1))
        .await
        .expect("edit")
        .expect("edited");
    assert_eq!(edited.kind, EventKind::MessageEdited);
    assert_eq!(edited.seq, 3);
    // The event carries the new text, as every member's client shows it live.
    let shown = edited.message.as_ref().expect("message");
    assert!(!shown.unreadable, "an edit's own event reads its new body");
    assert_eq!(shown.body.as_ref().map(|b| b.as_str()), Some("revised plan"));
    let deleted = store.delete_message(&new.id, NOW.plus_ms(2)).await.expect("delete").expect("deleted");
    assert_eq!(deleted.kind, EventKind::MessageDeleted);
    let tombstone = deleted.message.expect("message");
    assert!(tombstone.deleted && tombstone.body.is_none());
    assert!(store.delete_message(&new.id, NOW).await.expect("delete").is_none(), "deleting twice is a no-op");
    assert!(store.edit_message(&new.id, &MessageBody::parse("x").expect("body"), NOW).await.expect("edit").is_none());
    // Replay shows the current state everywhere: the body is gone from the log too.
    let events = store.events_after(&channel.id, 0, 100).await.expect("events");
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![EventKind::MemberJoined, EventKind::MessageCreated, EventKind::MessageEdited, EventKind::MessageDeleted]
    );
    assert!(events.iter().filter_map(|e| e.message.as_ref()).all(|m| m.body.is_none() && m.deleted));
}

pub async fn concurrent_posts_keep_seq_dense(store: &dyn Backend) {
    let user = make_user(store, Role::Member).await;
    let channel = new_channel(store, &user, ChannelKind::Public).await;
    const PER_WRITER: usize = 25;
    let writer = |n: usize| {
        let channel = channel.clone();
        let user = user.clone();
        async move {
            for i in 0..PER_WRITER {
                post(store, &message(&channel, &user, &format!("writer {n} message {i}"))).await;
            }
        }
    };
    tokio::join!(writer(0), writer(1), writer(2), writer(3));
    let events = store.events_after(&channel.id, 0, 1_000).await.expect("events");
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    let expected: Vec<i64> = (1..=(1 + 4 * PER_WRITER as i64)).collect();
    assert_eq!(seqs, expected, "seq must be dense with no gap and no duplicate");
}

pub async fn history_pages_both_ways(store: &dyn Backend) {
    let user = make_user(store, Role::Member).await;
    let channel = new_channel(store, &user, ChannelKind::Public).await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let new = message(&channel, &user, &format!("m{i}"));
        ids.push(new.id.clone());
        post(store, &new).await;
    }
    // Messages have seq 2..=8.
    let page = |before, after, limit| HistoryQuery { before_seq: before, after_seq: after, thread_id: None, limit };
    let (latest, more) = store.history(&channel.id, page(None, None, 3)).await.expect("history");
    assert_eq!(latest.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![6, 7, 8]);
    assert!(more);
    let (older, more) = store.history(&channel.id, page(Some(6), None, 3)).await.expect("history");
    assert_eq!(older.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![3, 4, 5]);
    assert!(more);
    let (oldest, more) = store.history(&channel.id, page(Some(3), None, 3)).await.expect("history");
    assert_eq!(oldest.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![2]);
    assert!(!more);
    let (newer, more) = store.history(&channel.id, page(None, Some(5), 2)).await.expect("history");
    assert_eq!(newer.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![6, 7]);
    assert!(more);
    let (tail, more) = store.history(&channel.id, page(None, Some(7), 5)).await.expect("history");
    assert_eq!(tail.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![8]);
    assert!(!more);
    let mut reply = message(&channel, &user, "in thread");
    reply.thread_id = Some(ids[0].clone());
    post(store, &reply).await;
    let thread = HistoryQuery { before_seq: None, after_seq: None, thread_id: Some(&ids[0]), limit: 10 };
    let (replies, _) = store.history(&channel.id, thread).await.expect("thread");
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].id, reply.id);
}

pub async fn membership_events_and_listing(store: &dyn Backend) {
    let owner = make_user(store, Role::Member).await;
    let other = make_user(store, Role::Member).await;
    let public = new_channel(store, &owner, ChannelKind::Public).await;
    let private = new_channel(store, &owner, ChannelKind::Private).await;
    // Not a member: the public channel is listed (with include_public), the private one never.
    let listed = store.list_channels(&other.id, true, 10_000).await.expect("list");
    assert!(listed.iter().any(|l| l.channel.id == public.id && l.membership.is_none()));
    assert!(listed.iter().all(|l| l.channel.id != private.id));
    let joined = store.add_member(&private.id, &other.id, ChannelRole::Member, NOW).await.expect("add").expect("event");
    assert_eq!((joined.kind, joined.seq), (EventKind::MemberJoined, 2));
    assert!(store.add_member(&private.id, &other.id, ChannelRole::Member, NOW).await.expect("add").is_none());
    for i in 0..3 {
        post(store, &message(&private, &owner, &format!("unread {i}"))).await;
    }
    post(store, &message(&private, &other, "my own message does not count")).await;
    let listing = store.list_channels(&other.id, false, 100).await.expect("list");
    let entry = listing.iter().find(|l| l.channel.id == private.id).expect("listed");
    assert_eq!(entry.unread, 3);
    store.mark_read(&private.id, &other.id, 4).await.expect("read");
    store.mark_read(&private.id, &other.id, 2).await.expect("read never goes back");
    store.mark_read(&private.id, &other.id, 1_000_000).await.expect("read is bounded");
    let listing = store.list_channels(&other.id, false, 100).await.expect("list");
    let entry = listing.iter().find(|l| l.channel.id == private.id).expect("listed");
    assert_eq!(entry.unread, 0);
    assert_eq!(entry.last_read_seq, 6);
    let seqs = store.member_channel_seqs(&other.id).await.expect("seqs");
    assert!(seqs.contains(&(private.id.clone(), 6)));
    let members = store.list_members(&private.id, 100).await.expect("members");
    assert_eq!(members.len(), 2);
    let left = store.remove_member(&private.id, &other.id, NOW).await.expect("remove").expect("event");
    assert_eq!((left.kind, left.seq), (EventKind::MemberLeft, 7));
    assert!(store.remove_member(&private.id, &other.id, NOW).await.expect("remove").is_none());
    assert!(store.membership(&private.id, &other.id).await.expect("membership").is_none());
}

pub async fn direct_channels_are_one_per_pair(store: &dyn Backend) {
    let a = make_user(store, Role::Member).await;
    let b = make_user(store, Role::Guest).await;
    let first_id = ChannelId::from_generated(id("dm"));
    let (first, events, created) = store.open_direct(&first_id, &a.id, &b.id, NOW).await.expect("open");
    assert!(created);
    assert_eq!(first.kind, ChannelKind::Direct);
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);
    let (again, events, created) =
        store.open_direct(&ChannelId::from_generated(id("dm")), &b.id, &a.id, NOW).await.expect("open");
    assert!(!created && events.is_empty());
    assert_eq!(again.id, first.id, "either order names the same pair");
    let listing = store.list_channels(&a.id, false, 100).await.expect("list");
    let entry = listing.iter().find(|l| l.channel.id == first.id).expect("listed");
    assert_eq!(entry.dm_peer.as_ref(), Some(&b.id));
    let (own, events, _) =
        store.open_direct(&ChannelId::from_generated(id("dm")), &a.id, &a.id, Timestamp(NOW.0)).await.expect("self");
    assert_eq!(events.len(), 1);
    assert_eq!(store.list_members(&own.id, 10).await.expect("members").len(), 1);
}
