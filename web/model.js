// The client's state, without DOM: channels with unread counts, a cursor per channel (the highest
// event seq applied, so a replayed event is applied exactly once), loaded messages by id, thread
// replies, typing notices, and messages being sent. Views subscribe to changes.

const TYPING_SHOWN_MS = 6_000;
// Live messages held back while a window does not reach the present (see setWindow): the newest
// are kept, for the ones that arrive while the page that closes the gap is on its way.
const HELD_BACK_MAX = 500;

export class Model {
  constructor(me) {
    this.me = me;
    this.channels = new Map(); // id → channel as GET /channels lists it
    this.cursors = new Map(); // channel id → highest event seq applied
    this.history = new Map(); // channel id → {byId: Map, hasMore, loaded, oldestSeq, newerGap, newestSeq}
    this.threads = new Map(); // parent message id → {byId: Map, loaded}
    this.pending = new Map(); // client_id → message being sent
    this.typing = new Map(); // channel id → Map(user id → expiry ms)
    this.activeChannel = null;
    this.listeners = new Set();
  }

  subscribe(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  emit(change) {
    for (const fn of this.listeners) fn(change);
  }

  // Channels ------------------------------------------------------------------------------------

  setChannels(list) {
    this.channels.clear();
    for (const channel of list) this.putChannel(channel);
    this.emit({ type: "channels" });
  }

  putChannel(channel) {
    const before = this.channels.get(channel.id) || {};
    const merged = { unread: 0, ...before, ...channel };
    this.channels.set(channel.id, merged);
    if (merged.member && !this.cursors.has(channel.id)) this.cursors.set(channel.id, channel.last_seq || 0);
    return merged;
  }

  removeChannel(id) {
    this.channels.delete(id);
    this.cursors.delete(id);
    this.history.delete(id);
    this.emit({ type: "channels" });
    this.emit({ type: "removed", channelId: id });
  }

  memberChannels() {
    return [...this.channels.values()].filter((c) => c.member);
  }

  /** The cursors to resume from: every channel the user belongs to. */
  resumeCursors() {
    const cursors = {};
    for (const channel of this.memberChannels()) cursors[channel.id] = this.cursors.get(channel.id) ?? channel.last_seq ?? 0;
    return cursors;
  }

  markSeen(channelId) {
    const channel = this.channels.get(channelId);
    if (channel && channel.unread) {
      channel.unread = 0;
      this.emit({ type: "channels" });
    }
  }

  // Messages ------------------------------------------------------------------------------------

  historyOf(channelId) {
    if (!this.history.has(channelId)) this.history.set(channelId, { byId: new Map(), hasMore: false, loaded: false });
    return this.history.get(channelId);
  }

  /** Adds a page of history (older or newer), keyed by id so overlaps are harmless. */
  addHistory(channelId, messages, hasMore, older) {
    const store = this.historyOf(channelId);
    for (const message of messages) this.storeMessage(message);
    if (older || !store.loaded) store.hasMore = hasMore;
    store.loaded = true;
    this.emit({ type: "history", channelId });
  }

  /**
   * Replaces a channel's loaded history with a window around one message (a search result far
   * back). While `newerGap` is set the window does not reach the present: newer messages are not
   * stored until a page of them is loaded (`addNewer`), so the log never shows a hole.
   */
  setWindow(channelId, messages, { hasOlder, hasNewer }) {
    const seqs = messages.map((m) => m.seq);
    const store = { byId: new Map(), hasMore: hasOlder, loaded: true, newerGap: hasNewer && seqs.length > 0 };
    if (seqs.length) Object.assign(store, { oldestSeq: Math.min(...seqs), newestSeq: Math.max(...seqs) });
    this.history.set(channelId, store);
    for (const message of messages) this.storeMessage(message);
    this.emit({ type: "history", channelId });
  }

  /** Adds the next page after the window; `hasNewer` false means it now reaches the present. */
  addNewer(channelId, messages, hasNewer) {
    const store = this.historyOf(channelId);
    store.newestSeq = Math.max(store.newestSeq ?? 0, ...messages.map((m) => m.seq));
    store.newerGap = hasNewer;
    for (const message of messages) this.storeMessage(message);
    // Live copies held back are as new as the page's or newer (an edit during the request).
    for (const [id, message] of store.heldBack || []) {
      if (!this.inWindow(channelId, message)) continue;
      store.heldBack.delete(id);
      this.storeMessage(message);
    }
    this.emit({ type: "history", channelId });
  }

  /** Whether a message belongs in the loaded window (false: it is past a window's newer gap). */
  inWindow(channelId, message) {
    const store = this.history.get(channelId);
    return !store?.newerGap || (message.seq !== undefined && message.seq !== null && message.seq <= store.newestSeq);
  }

  threadOf(parentId) {
    if (!this.threads.has(parentId)) this.threads.set(parentId, { byId: new Map(), loaded: false });
    return this.threads.get(parentId);
  }

  addThread(channelId, parentId, replies) {
    const thread = this.threadOf(parentId);
    for (const reply of replies) thread.byId.set(reply.id, reply);
    thread.loaded = true;
    this.emit({ type: "thread", parentId, channelId });
  }

  /** Stores a message wherever it belongs (channel list or thread), replacing an older copy. */
  storeMessage(message) {
    const store = this.historyOf(message.channel_id);
    const outside = !message.thread_id && !this.inWindow(message.channel_id, message);
    const target = message.thread_id ? this.threads.get(message.thread_id)?.byId : outside ? null : store.byId;
    if (outside) {
      store.heldBack ??= new Map();
      store.heldBack.set(message.id, message);
      if (store.heldBack.size > HELD_BACK_MAX) store.heldBack.delete(store.heldBack.keys().next().value);
    }
    // A history page read before a live edit or delete may arrive after it: keep the newer copy.
    const held = target?.get(message.id);
    const stale = held && ((held.deleted && !message.deleted) || (held.edited_at || "") > (message.edited_at || ""));
    if (target && !stale) target.set(message.id, { ...message, reply_count: Math.max(message.reply_count || 0, held?.reply_count || 0) });
    if (message.client_id && this.pending.has(message.client_id)) this.pending.delete(message.client_id);
  }

  findMessage(channelId, id) {
    const found = this.history.get(channelId)?.byId.get(id);
    if (found) return found;
    for (const thread of this.threads.values()) if (thread.byId.has(id)) return thread.byId.get(id);
    return null;
  }

  /** A message sent by this client, shown at once and replaced by the server's copy. */
  addPending(message) {
    this.pending.set(message.client_id, message);
    this.emit({ type: "message", message, channelId: message.channel_id });
  }

  failPending(clientId, failed) {
    const message = this.pending.get(clientId);
    if (!message) return;
    message.failed = failed;
    this.emit({ type: "message", message, channelId: message.channel_id });
  }

  /** The server accepted a send: its answer replaces the pending copy (the event may come first). */
  confirmSent(message) {
    const pendingCopy = this.pending.get(message.client_id);
    this.storeMessage(this.findMessage(message.channel_id, message.id) || message);
    this.emit({ type: "message", message: this.findMessage(message.channel_id, message.id) || message, replaces: pendingCopy, channelId: message.channel_id });
  }

  pendingIn(channelId, threadId = null) {
    return [...this.pending.values()].filter((m) => m.channel_id === channelId && (m.thread_id || null) === threadId);
  }

  // Live events ---------------------------------------------------------------------------------

  /** Applies one event frame; returns false for a duplicate (at or below the cursor). */
  applyEvent(frame) {
    const { channel_id: channelId, seq, kind, data } = frame;
    const cursor = this.cursors.get(channelId);
    if (cursor === undefined) {
      // Not a channel we follow yet: only our own join brings one in.
      if (kind !== "member.joined" || data?.user_id !== this.me.id) return false;
      this.putChannel({ ...(data.channel || { id: channelId }), member: true, unread: 0 });
      this.cursors.set(channelId, seq);
      this.emit({ type: "channels" });
      this.emit({ type: "joined", channelId });
      return true;
    }
    if (seq <= cursor) return false;
    this.cursors.set(channelId, seq);
    const channel = this.channels.get(channelId);
    if (channel) channel.last_seq = Math.max(channel.last_seq || 0, seq);
    switch (kind) {
      case "message.created":
        this.onCreated(channelId, data);
        break;
      case "message.edited":
      case "message.deleted":
        this.onChanged(channelId, data);
        break;
      case "member.left":
        if (data?.user_id === this.me.id) this.removeChannel(channelId);
        break;
      case "channel.updated":
        if (channel) this.putChannel({ ...data, member: true, unread: channel.unread });
        this.emit({ type: "channels" });
        this.emit({ type: "channel", channelId });
        break;
      default:
        break;
    }
    return true;
  }

  onCreated(channelId, message) {
    const replaces = message.client_id ? this.pending.get(message.client_id) : null;
    // Counted on the event, which the cursor lets through exactly once (a send's own answer
    // may have stored the reply already).
    if (message.thread_id) {
      const parent = this.history.get(channelId)?.byId.get(message.thread_id);
      if (parent) {
        parent.reply_count = (parent.reply_count || 0) + 1;
        this.emit({ type: "message", message: parent, channelId });
      }
    }
    this.storeMessage(message);
    const channel = this.channels.get(channelId);
    const seen = this.activeChannel === channelId && document.visibilityState === "visible";
    if (channel && message.sender_id !== this.me.id && !message.deleted && !seen) {
      channel.unread = (channel.unread || 0) + 1;
      this.emit({ type: "channels" });
    }
    this.clearTyping(channelId, message.sender_id);
    this.emit({ type: "message", message, replaces, channelId, live: true });
  }

  onChanged(channelId, message) {
    this.storeMessage(message);
    this.emit({ type: "message", message, channelId });
  }

  /** After a `resync`: this channel's loaded history is stale and is fetched again. */
  resetHistory(channelId, lastSeq) {
    this.history.delete(channelId);
    if (lastSeq !== undefined) this.cursors.set(channelId, Math.max(this.cursors.get(channelId) || 0, lastSeq));
    this.emit({ type: "stale", channelId });
  }

  // Typing --------------------------------------------------------------------------------------

  noteTyping(channelId, userId) {
    if (userId === this.me.id) return;
    if (!this.typing.has(channelId)) this.typing.set(channelId, new Map());
    this.typing.get(channelId).set(userId, Date.now() + TYPING_SHOWN_MS);
    this.emit({ type: "typing", channelId });
    setTimeout(() => this.emit({ type: "typing", channelId }), TYPING_SHOWN_MS + 50);
  }

  clearTyping(channelId, userId) {
    if (this.typing.get(channelId)?.delete(userId)) this.emit({ type: "typing", channelId });
  }

  typists(channelId) {
    const now = Date.now();
    const map = this.typing.get(channelId);
    if (!map) return [];
    return [...map.entries()].filter(([, until]) => until > now).map(([id]) => id);
  }
}
