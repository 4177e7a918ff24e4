// The channel view: header (name, topic, actions), the message log with earlier pages on demand,
// live updates, read markers, the typing line, the composer and the thread pane; and showing one
// message opened from a search result (history.js loads a window around it when needed).

import { api, describe, seg } from "./api.js";
import { h, icon, iconButton, replace } from "./dom.js";
import { userText } from "./text.js";
import { avatarNode, displayName, nameNode } from "./users.js";
import { MessageList, enableKeyboard } from "./message.js";
import { makeComposer } from "./composer.js";
import { acceptDrops } from "./files.js";
import { mountThread } from "./thread.js";
import { confirmDialog, editTopic } from "./dialogs.js";
import * as history from "./history.js";

const NEAR_BOTTOM_PX = 120;
const READ_MARK_DELAY_MS = 400;

/** Actions on messages, shared by the channel and its threads. */
export function messageActions(ctx, channelId, { onReply }) {
  const { model, me } = ctx;
  const isServerAdmin = me.role === "admin" || me.role === "owner";
  return {
    reply: (message) => onReply(message),
    canEdit: (message) => message.sender_id === me.id,
    canDelete: (message) => {
      const role = model.channels.get(channelId)?.role;
      return message.sender_id === me.id || isServerAdmin || role === "owner" || role === "admin";
    },
    edit: async (message, body) => {
      try {
        model.onChanged(channelId, await api.patch(`/api/v1/messages/${seg(message.id)}`, { body }));
      } catch (error) {
        throw new Error(describe(error));
      }
    },
    remove: async (message) => {
      const ok = await confirmDialog({
        title: "Delete message?",
        text: "The message text is destroyed for everyone. This cannot be undone.",
        confirm: "Delete",
        danger: true,
      });
      if (!ok) return;
      try {
        await api.del(`/api/v1/messages/${seg(message.id)}`);
        model.onChanged(channelId, { ...message, body: null, deleted: true });
      } catch (error) {
        await confirmDialog({ title: "Could not delete", text: describe(error), confirm: "OK", cancel: null });
      }
    },
    retry: (message) => send(ctx, message),
    discard: (message) => {
      model.pending.delete(message.client_id);
      model.emit({ type: "discarded", message, channelId });
    },
  };
}

/** Sends (or re-sends, with the same client_id, so the server keeps one copy) a message. */
export async function send(ctx, message) {
  const { model } = ctx;
  message.failed = null;
  model.addPending(message);
  try {
    const stored = await api.post(`/api/v1/channels/${seg(message.channel_id)}/messages`, {
      body: message.body,
      client_id: message.client_id,
      ...(message.thread_id ? { thread_id: message.thread_id } : {}),
      ...(message.files?.length ? { file_ids: message.files.map((file) => file.id) } : {}),
    });
    model.confirmSent(stored);
  } catch (error) {
    if (error.code === "network" || error.status >= 500 || error.status === 429) {
      model.failPending(message.client_id, describe(error));
      return;
    }
    // Refused as it is (too long, not allowed…): give the text back to the composer.
    model.pending.delete(message.client_id);
    model.emit({ type: "discarded", message, channelId: message.channel_id });
    throw new Error(describe(error));
  }
}

/** A message to send; `files` are uploaded files (files.js) it carries. */
export function newMessage(ctx, channelId, body, threadId = null, files = []) {
  return {
    client_id: crypto.randomUUID(),
    channel_id: channelId,
    sender_id: ctx.me.id,
    body,
    thread_id: threadId,
    created_at: new Date().toISOString(),
    reply_count: 0,
    files,
  };
}

export function mountConversation(main, ctx, route) {
  const { model, me } = ctx;
  const channelId = route.channelId;
  const cleanups = [];
  let thread = null;
  let readTimer = null;

  const title = h("h1", { id: "conv-title", class: "conv-title" });
  const topic = h("p", { class: "topic", id: "conv-topic" });
  const headerActions = h("div", { class: "header-actions" });
  const header = h(
    "header",
    { class: "view-header" },
    h("button", { type: "button", class: "icon-btn nav-toggle", "aria-label": "Open navigation", on: { click: ctx.openNav } }, icon("menu")),
    h("div", { class: "conv-heading" }, title, topic),
    headerActions,
  );
  const top = h("div", { class: "history-top" });
  const listEl = h("div", { class: "msg-list", id: "message-list" });
  const bottom = h("div", { class: "history-bottom" });
  const scroller = h("div", { class: "scroller", id: "messages", role: "log", "aria-labelledby": "conv-title", tabindex: "0" }, top, listEl, bottom);
  const jump = h("button", { type: "button", class: "jump", hidden: true, on: { click: onJump } });
  let newBelow = false; // live messages arrived below the part of the log in view
  let started = false;
  let revealWanted = route.reveal || null; // a search result to show once the view has started
  const typingLine = h("div", { class: "typing-line", "aria-live": "polite", id: "typing" });
  const composer = makeComposer({
    id: "composer",
    label: "Message",
    placeholder: "Write a message…",
    channelId,
    onSend: (text, files) => {
      // Writing while reading far back: go to the present first, where the message will be.
      if (model.historyOf(channelId).newerGap) jumpToPresent();
      const sending = send(ctx, newMessage(ctx, channelId, text, null, files));
      scrollToBottom(true);
      return sending;
    },
    onTyping: () => ctx.live?.sendTyping(channelId),
    onEditLast: () => editLastOwn(),
  });
  const threadPane = h("aside", { class: "thread-pane", id: "thread", hidden: true, "aria-label": "Thread" });
  const section = h(
    "section",
    { class: "conversation", "aria-labelledby": "conv-title" },
    header,
    h("div", { class: "conv-body" }, h("div", { class: "conv-main" }, scroller, jump, typingLine, composer.el), threadPane),
  );
  main.append(section);
  const convMain = section.querySelector(".conv-main");
  convMain.append(h("div", { class: "drop-hint", "aria-hidden": "true" }, h("p", { text: "Drop files to attach them" })));
  cleanups.push(acceptDrops(convMain, (files) => composer.addFiles(files)));

  const openThread = (message) => ctx.navigate(`/c/${channelId}/t/${message.thread_id || message.id}`);
  const actions = messageActions(ctx, channelId, { onReply: openThread });
  const list = new MessageList(listEl, actions);
  enableKeyboard(scroller, listEl);

  function channel() {
    return model.channels.get(channelId);
  }

  function renderHeader() {
    const c = channel();
    if (!c) return;
    if (c.kind === "dm") {
      replace(title, avatarNode(c.dm_user_id || "", "tiny"), nameNode(c.dm_user_id || "", "conv-name"));
      document.title = `${displayName(c.dm_user_id)} · Rampart`;
    } else {
      replace(title, icon(c.kind === "private" ? "lock" : "hash"), userText(c.name || "", "conv-name"));
      document.title = `#${c.name} · Rampart`;
    }
    replace(topic, c.topic ? userText(c.topic, "topic-text") : c.kind === "dm" ? "Direct message" : "");
    const canManage = c.role === "owner" || c.role === "admin" || me.role === "admin" || me.role === "owner";
    replace(
      headerActions,
      iconButton("search", "Search messages", ctx.focusSearch, { className: "icon-btn search-toggle" }),
      c.kind !== "dm" && c.member && canManage ? iconButton("edit", "Edit topic", () => editTopic(ctx, c)) : null,
      c.kind !== "dm" && c.member ? iconButton("logout", "Leave channel", leave) : null,
    );
    if (!c.member) composer.setDisabled("Join this channel to send messages.");
    else if (c.archived) composer.setDisabled("This channel is archived.");
    else composer.setDisabled(null);
    if (!c.member) {
      replace(typingLine, h("button", { type: "button", class: "btn primary", id: "join-channel", text: `Join #${c.name}`, on: { click: join } }));
    }
  }

  async function join() {
    try {
      await api.post(`/api/v1/channels/${seg(channelId)}/join`);
      const fresh = await api.get(`/api/v1/channels/${seg(channelId)}`);
      model.putChannel({ ...fresh, member: true });
      model.emit({ type: "channels" });
      typingLine.replaceChildren();
      renderHeader();
      await loadLatest();
      composer.focus();
    } catch (error) {
      replace(typingLine, h("span", { class: "error", text: describe(error) }));
    }
  }

  async function leave() {
    const c = channel();
    const ok = await confirmDialog({
      title: `Leave #${c?.name || "channel"}?`,
      text: c?.kind === "private" ? "You will need to be added again to come back." : "You can join again from Browse channels.",
      confirm: "Leave",
      danger: true,
    });
    if (!ok) return;
    try {
      await api.post(`/api/v1/channels/${seg(channelId)}/leave`);
      model.removeChannel(channelId);
    } catch (error) {
      await confirmDialog({ title: "Could not leave", text: describe(error), confirm: "OK", cancel: null });
    }
  }

  function renderTop() {
    const store = model.historyOf(channelId);
    const c = channel();
    if (store.hasMore) {
      replace(top, h("button", { type: "button", class: "btn small ghost", id: "load-earlier", text: "Load earlier messages", on: { click: loadEarlier } }));
    } else if (store.loaded) {
      const name = c?.kind === "dm" ? ["your conversation with ", nameNode(c.dm_user_id || "")] : [c?.kind === "private" ? "the private channel " : "#", userText(c?.name || "")];
      replace(
        top,
        h("div", { class: "beginning" }, h("h2", {}, "This is the beginning of ", name), h("p", { class: "muted", text: store.byId.size ? "Messages are encrypted at rest on the server." : "No messages yet. Say hello!" })),
      );
    } else {
      replace(top, h("p", { class: "muted", text: "Loading messages…" }));
    }
  }

  function renderAll() {
    const store = model.historyOf(channelId);
    // Pending sends belong at the present, which a window far back does not show.
    list.reset([...store.byId.values(), ...(store.newerGap ? [] : model.pendingIn(channelId))]);
    renderTop();
    replace(bottom, store.newerGap ? h("button", { type: "button", class: "btn small ghost", id: "load-newer", text: "Load newer messages", on: { click: loadNewer } }) : null);
    renderJump();
  }

  function renderJump() {
    const gap = model.historyOf(channelId).newerGap;
    jump.hidden = !gap && !newBelow;
    replace(jump, gap ? "Jump to present " : "New messages ", icon(gap ? "down" : "plus"));
  }

  function onJump() {
    if (model.historyOf(channelId).newerGap) jumpToPresent();
    else scrollToBottom(true);
  }

  /** Leaves a window far back for the latest messages (the "stale" change reloads them). */
  function jumpToPresent() {
    list.mark(null);
    model.resetHistory(channelId);
  }

  async function loadLatest() {
    try {
      await history.loadLatest(model, channelId);
      renderAll();
      scrollToBottom(true);
      markRead();
    } catch (error) {
      if (error.code === "not_found") return showMissing();
      if (error.code === "forbidden" && !channel()?.member) {
        // A public channel seen from outside: its messages are for members.
        return replace(top, h("div", { class: "beginning" }, h("h2", {}, "Join ", userText(`#${channel()?.name || ""}`), " to read along"), h("p", { class: "muted", text: "Public channels are open to everyone here; their messages are shown to members." })));
      }
      replace(top, h("p", { class: "error", role: "alert", text: describe(error) }));
    }
  }

  async function loadEarlier() {
    const before = scroller.scrollHeight - scroller.scrollTop;
    try {
      if (!(await history.loadEarlier(model, channelId))) return;
      renderAll();
      scroller.scrollTop = scroller.scrollHeight - before;
    } catch (error) {
      replace(top, h("p", { class: "error", role: "alert", text: describe(error) }));
    }
  }

  /** The next page of a window far back; appended below, so what is in view stays put. */
  async function loadNewer() {
    try {
      if (!(await history.loadNewer(model, channelId))) return;
      renderAll();
      if (!model.historyOf(channelId).newerGap) markRead();
    } catch (error) {
      replace(bottom, h("p", { class: "error", role: "alert", text: describe(error) }));
    }
  }

  /** Shows `message` in the log, highlighted and focused, loading the history around it if needed. */
  async function reveal(message) {
    revealWanted = message;
    if (!started) return;
    revealWanted = null;
    try {
      if (!history.isLoaded(model, message)) {
        replace(top, h("p", { class: "muted", text: "Loading messages…" }));
        await history.loadAround(model, message);
        renderAll();
      }
    } catch (error) {
      if (error.code === "not_found") return showMissing();
      return replace(top, h("p", { class: "error", role: "alert", text: describe(error) }));
    }
    const el = list.mark(message.id);
    if (!el) return;
    el.scrollIntoView({ block: "center" });
    el.focus({ preventScroll: true });
  }

  function atBottom() {
    return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < NEAR_BOTTOM_PX;
  }

  function scrollToBottom(force) {
    if (force || atBottom()) {
      requestAnimationFrame(() => {
        scroller.scrollTop = scroller.scrollHeight;
      });
      newBelow = false;
      renderJump();
    }
  }

  function markRead() {
    clearTimeout(readTimer);
    readTimer = setTimeout(() => {
      // A window far back does not show the newest messages: they stay unread.
      if (document.visibilityState !== "visible" || !channel()?.member || model.historyOf(channelId).newerGap) return;
      model.markSeen(channelId);
      const seq = model.cursors.get(channelId);
      if (seq) api.post(`/api/v1/channels/${seg(channelId)}/read`, { seq }).catch(() => {});
    }, READ_MARK_DELAY_MS);
  }

  function editLastOwn() {
    const own = [...listEl.querySelectorAll(`.msg[data-sender="${CSS.escape(me.id)}"]:not(.deleted):not(.pending)`)].pop();
    const button = own?.querySelector('[aria-label="Edit message"]');
    if (!button) return false;
    button.click();
    return true;
  }

  function renderTyping() {
    if (!channel()?.member) return;
    const ids = model.typists(channelId);
    if (!ids.length) return typingLine.replaceChildren();
    const names = ids.slice(0, 2).map((id) => nameNode(id, "typist"));
    const text =
      ids.length === 1
        ? [names[0], " is typing…"]
        : ids.length === 2
          ? [names[0], " and ", names[1], " are typing…"]
          : ["Several people are typing…"];
    replace(typingLine, h("span", { class: "dots", "aria-hidden": "true" }, h("i"), h("i"), h("i")), h("span", {}, text));
  }

  function showMissing() {
    replace(
      section,
      h(
        "div",
        { class: "empty-state page" },
        icon("alert", "empty-icon"),
        h("h1", { text: "Conversation not found" }),
        h("p", { class: "muted", text: "It may have been deleted, or you are no longer a member." }),
        h("a", { class: "btn primary", href: "#/", text: "Back to Rampart" }),
      ),
    );
  }

  cleanups.push(
    model.subscribe((change) => {
      if (change.channelId !== channelId && change.type !== "channels") return;
      switch (change.type) {
        case "message": {
          const message = change.message;
          if (message.thread_id || !model.inWindow(channelId, message)) break;
          const wasAtBottom = atBottom();
          list.upsert(message, change.replaces);
          if (!model.historyOf(channelId).loaded) break;
          if (wasAtBottom || message.sender_id === me.id) scrollToBottom(true);
          else if (change.live) {
            newBelow = true;
            renderJump();
          }
          if (change.live) markRead();
          renderTop();
          break;
        }
        case "discarded":
          list.remove(change.message);
          break;
        case "stale":
          loadLatest();
          break;
        case "channel":
        case "channels":
          renderHeader();
          break;
        case "typing":
          renderTyping();
          break;
        default:
          break;
      }
    }),
  );
  scroller.addEventListener("scroll", () => {
    if (atBottom() && newBelow) {
      newBelow = false;
      renderJump();
    }
    if (scroller.scrollTop < 80) loadEarlier();
    if (atBottom() && model.historyOf(channelId).newerGap) loadNewer();
  });
  const onVisible = () => document.visibilityState === "visible" && markRead();
  document.addEventListener("visibilitychange", onVisible);
  cleanups.push(() => document.removeEventListener("visibilitychange", onVisible));

  async function start() {
    model.activeChannel = channelId;
    if (!channel()) {
      try {
        model.putChannel(await api.get(`/api/v1/channels/${seg(channelId)}`));
      } catch (error) {
        if (error.code === "not_found") return showMissing();
      }
    }
    renderHeader();
    const store = model.historyOf(channelId);
    started = true;
    if (revealWanted && !revealWanted.thread_id) {
      // Opened from a search result: load around that message rather than the latest page.
      renderAll();
      await reveal(revealWanted);
    } else if (store.loaded) {
      renderAll();
      scrollToBottom(true);
      markRead();
    } else {
      renderAll();
      await loadLatest();
    }
    setThread(route.threadId);
    if (revealWanted) thread?.reveal(revealWanted);
    revealWanted = null;
    if (!route.threadId && !list.markedKey && window.matchMedia("(min-width: 761px)").matches) composer.focus();
  }

  function setThread(threadId) {
    if (thread && thread.parentId === threadId) return;
    if (thread) thread.unmount();
    thread = null;
    // The log narrows or widens with the pane: stay at the bottom if we were there.
    const wasAtBottom = atBottom();
    section.classList.toggle("with-thread", Boolean(threadId));
    if (wasAtBottom) scrollToBottom(true);
    threadPane.hidden = !threadId;
    if (threadId) thread = mountThread(threadPane, ctx, channelId, threadId, () => ctx.navigate(`/c/${channelId}`));
    else threadPane.replaceChildren();
  }

  start();

  return {
    /** A route in this channel: the thread to show, and maybe a search result to show. */
    update(next) {
      setThread(next.threadId);
      if (next.reveal && !next.reveal.thread_id) reveal(next.reveal);
      else if (next.reveal) thread?.reveal(next.reveal);
    },
    unmount() {
      clearTimeout(readTimer);
      composer.dispose();
      // Coming back to the channel shows the present, not a window far back.
      if (model.history.get(channelId)?.newerGap) model.history.delete(channelId);
      if (model.activeChannel === channelId) model.activeChannel = null;
      if (thread) thread.unmount();
      for (const fn of cleanups) fn();
    },
  };
}
