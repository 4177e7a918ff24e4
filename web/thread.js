// The thread pane: the parent message, its replies (live), and a composer that replies in the
// thread. Opened at #/c/<channel>/t/<message>, or from a search result (the reply highlighted).

import { api, describe, seg } from "./api.js";
import { h, iconButton, replace } from "./dom.js";
import { MessageList, enableKeyboard, messageElement } from "./message.js";
import { makeComposer } from "./composer.js";
import { acceptDrops } from "./files.js";
import { messageActions, newMessage, send } from "./conversation.js";

const REPLIES_MAX = 200;

export function mountThread(pane, ctx, channelId, parentId, close) {
  const { model } = ctx;
  const parentHolder = h("div", { class: "thread-parent" });
  const listEl = h("div", { class: "msg-list thread-list", id: "thread-replies", role: "log", "aria-label": "Replies" });
  const count = h("p", { class: "thread-count muted" });
  const composer = makeComposer({
    id: "thread-composer",
    label: "Reply in thread",
    placeholder: "Reply…",
    channelId,
    onSend: (text, files) => send(ctx, newMessage(ctx, channelId, text, parentId, files)),
    onTyping: () => ctx.live?.sendTyping(channelId),
  });
  replace(
    pane,
    h("header", { class: "thread-head" }, h("h2", { text: "Thread" }), iconButton("close", "Close thread", close)),
    h("div", { class: "thread-scroll" }, parentHolder, count, listEl),
    composer.el,
  );
  const stopDrops = acceptDrops(pane, (files) => composer.addFiles(files));
  const actions = messageActions(ctx, channelId, { onReply: () => composer.focus() });
  const list = new MessageList(listEl, actions, { inThread: true });
  listEl.tabIndex = 0;
  enableKeyboard(listEl, listEl);
  let revealWanted = null; // the id of a reply opened from a search result

  /** Highlights, scrolls to and focuses the wanted reply, once the replies are loaded. */
  function showWanted() {
    const el = revealWanted && model.threads.get(parentId)?.loaded ? list.mark(revealWanted) : null;
    if (!el) return;
    revealWanted = null;
    el.scrollIntoView({ block: "center" });
    el.focus({ preventScroll: true });
  }

  function renderParent() {
    const parent = model.findMessage(channelId, parentId);
    if (!parent) return;
    replace(parentHolder, messageElement(parent, actions, { inThread: true }));
    const n = parent.reply_count || 0;
    count.textContent = n ? `${n} ${n === 1 ? "reply" : "replies"}` : "No replies yet.";
  }

  function renderReplies() {
    const thread = model.threadOf(parentId);
    list.reset([...thread.byId.values(), ...model.pendingIn(channelId, parentId)]);
  }

  async function load() {
    try {
      if (!model.findMessage(channelId, parentId)) {
        // Opened from a link: find the parent among recent history, else say so.
        const page = await api.get(`/api/v1/channels/${seg(channelId)}/messages?limit=200`);
        const parent = page.messages.find((m) => m.id === parentId);
        if (parent) model.historyOf(channelId).byId.set(parent.id, parent);
      }
      const page = await api.get(`/api/v1/channels/${seg(channelId)}/messages?thread_id=${seg(parentId)}&limit=${REPLIES_MAX}`);
      model.addThread(channelId, parentId, page.messages);
      if (!model.findMessage(channelId, parentId)) {
        replace(parentHolder, h("p", { class: "muted", text: "The first message of this thread is too far back to show here." }));
      }
    } catch (error) {
      replace(parentHolder, h("p", { class: "error", role: "alert", text: describe(error) }));
    }
  }

  const unsubscribe = model.subscribe((change) => {
    if (change.channelId !== channelId) return;
    if (change.type === "thread" && change.parentId === parentId) {
      renderParent();
      renderReplies();
      composer.focus();
      showWanted();
    } else if (change.type === "message" && change.message.id === parentId) {
      renderParent();
    } else if (change.type === "message" && change.message.thread_id === parentId) {
      list.upsert(change.message, change.replaces);
      listEl.lastElementChild?.scrollIntoView({ block: "nearest" });
    } else if (change.type === "discarded" && change.message.thread_id === parentId) {
      list.remove(change.message);
    }
  });

  renderParent();
  load();

  return {
    parentId,
    reveal(message) {
      revealWanted = message.id;
      showWanted();
    },
    unmount() {
      stopDrops();
      composer.dispose();
      unsubscribe();
      model.threads.delete(parentId);
    },
  };
}
