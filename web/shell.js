// The signed-in application: layout (sidebar, main view, search panel, connection bar), the hash
// router (#/c/<channel>[/t/<message>], #/account, #/admin/<tab>), keyboard shortcuts, opening a
// search result in its channel, the live connection and its frames.

import { api, seg } from "./api.js";
import { h, icon, replace } from "./dom.js";
import { Live } from "./live.js";
import { Model } from "./model.js";
import { remember } from "./users.js";
import { mountSidebar } from "./sidebar.js";
import { mountConversation } from "./conversation.js";
import { mountAccount } from "./account.js";
import { mountAdmin } from "./admin.js";
import { mountSearch } from "./search.js";

const ID = /^[0-9a-fA-F-]{8,64}$/;

/** The route in the address bar's fragment. */
export function parseRoute(hash = location.hash) {
  const parts = hash.replace(/^#\/?/, "").split("/").filter(Boolean);
  if (parts[0] === "c" && ID.test(parts[1] || "")) {
    return { view: "channel", channelId: parts[1], threadId: parts[2] === "t" && ID.test(parts[3] || "") ? parts[3] : null };
  }
  if (parts[0] === "account") return { view: "account" };
  if (parts[0] === "admin") return { view: "admin", tab: parts[1] || "users" };
  return { view: "home" };
}

export function navigate(path) {
  if (location.hash !== `#${path}`) location.hash = path;
}

/** Starts the app for `me` inside `root`; returns {stop}. */
export function startShell(root, me, { onSignedOut }) {
  remember(me);
  document.body.className = "app-page";
  const model = new Model(me);
  const connection = { state: "connecting", retryAt: null, everLive: false, listeners: new Set() };
  const banner = h("div", { class: "conn-banner", role: "status", "aria-live": "polite", hidden: true, id: "connection-status" });
  const main = h("main", { class: "main", id: "main" });
  const sidebarEl = h("nav", { class: "sidebar", id: "sidebar", "aria-label": "Conversations" });
  const scrim = h("div", { class: "scrim", "aria-hidden": "true" });
  const stack = h("div", { class: "main-stack" }, main);
  const shellEl = h("div", { class: "shell" }, sidebarEl, scrim, h("div", { class: "main-column" }, banner, stack));
  replace(root, shellEl);

  let view = null;
  let currentRoute = null;
  let revealNext = null; // a search result to show once its channel's route renders
  const ctx = {
    me,
    model,
    connection,
    navigate,
    openNav: () => shellEl.classList.add("nav-open"),
    closeNav: () => shellEl.classList.remove("nav-open"),
    signOut: onSignedOut,
    live: null,
    focusSearch: () => search.focus(),
    openMessage,
  };
  scrim.addEventListener("click", ctx.closeNav);
  document.addEventListener("keydown", onKey);
  function onKey(event) {
    if (event.key === "Escape" && shellEl.classList.contains("nav-open")) ctx.closeNav();
    else if (isSearchKey(event) && !document.querySelector("dialog[open]")) {
      event.preventDefault();
      search.focus();
    }
  }

  const search = mountSearch(ctx);
  stack.append(search.panel);
  const sidebar = mountSidebar(sidebarEl, ctx, { searchForm: search.form });
  // A link in the sidebar (even to the channel already open) leaves the results for that page.
  sidebarEl.addEventListener("click", (event) => event.target.closest("a[href]") && search.close());

  /** Shows a message (a search result) in its channel, or in its thread's pane for a reply. */
  function openMessage(message) {
    revealNext = message;
    const path = message.thread_id ? `/c/${message.channel_id}/t/${message.thread_id}` : `/c/${message.channel_id}`;
    if (location.hash === `#${path}`) renderRoute();
    else navigate(path);
  }

  function renderRoute() {
    const route = parseRoute();
    if (revealNext && route.view === "channel" && route.channelId === revealNext.channel_id) route.reveal = revealNext;
    revealNext = null;
    ctx.closeNav();
    search.close();
    if (view && currentRoute && view.update && sameView(currentRoute, route)) {
      currentRoute = route;
      view.update(route);
    } else {
      if (view) view.unmount();
      currentRoute = route;
      main.replaceChildren();
      if (route.view === "channel") view = mountConversation(main, ctx, route);
      else if (route.view === "account") view = mountAccount(main, ctx);
      else if (route.view === "admin" && (me.role === "admin" || me.role === "owner")) view = mountAdmin(main, ctx, route);
      else view = mountHome(main, ctx);
    }
    sidebar.highlight(route);
  }

  function renderBanner() {
    const { state, retryAt } = connection;
    const show = state !== "live" && (connection.everLive || state !== "connecting");
    banner.hidden = !show;
    shellEl.classList.toggle("is-offline", show);
    if (!show) return;
    const secs = retryAt ? Math.max(0, Math.ceil((retryAt - Date.now()) / 1000)) : 0;
    const text =
      state === "offline"
        ? "You're offline — reconnecting when your network is back."
        : secs > 0
          ? `Reconnecting… next try in ${secs} s.`
          : "Reconnecting…";
    replace(
      banner,
      h("span", { class: "spinner", "aria-hidden": "true" }),
      h("span", { class: "conn-text", text }),
      state === "offline" ? null : h("button", { type: "button", class: "btn small ghost", text: "Retry now", on: { click: () => ctx.live?.retryNow() } }),
    );
  }
  const bannerTimer = setInterval(() => connection.state === "reconnecting" && renderBanner(), 1000);

  const live = new Live({
    cursors: () => model.resumeCursors(),
    onFrame: (frame) => onFrame(frame),
    onState: ({ state, retryAt }) => {
      connection.state = state;
      connection.retryAt = retryAt;
      if (state === "live") connection.everLive = true;
      shellEl.dataset.connection = state;
      renderBanner();
      for (const fn of connection.listeners) fn(connection);
    },
  });
  ctx.live = live;

  async function onFrame(frame) {
    if (frame.type === "event") model.applyEvent(frame);
    else if (frame.type === "typing") model.noteTyping(frame.channel_id, frame.user_id);
    else if (frame.type === "ready") await onReady(frame);
    else if (frame.type === "resync") await onResync(frame.channel_id);
  }

  /** Reconciles the channel list with the server's: channels joined or left while away. */
  async function onReady(frame) {
    const serverChannels = frame.channels || {};
    for (const channel of model.memberChannels()) {
      if (!(channel.id in serverChannels)) model.removeChannel(channel.id);
    }
    for (const [id, seq] of Object.entries(serverChannels)) {
      if (model.cursors.has(id)) continue;
      model.cursors.set(id, seq);
      try {
        const channel = await api.get(`/api/v1/channels/${seg(id)}`);
        model.putChannel({ ...channel, member: true, unread: 0 });
        model.emit({ type: "channels" });
        completeDirect(id);
      } catch {
        // Gone again, or not visible: nothing to show.
      }
    }
  }

  async function onResync(channelId) {
    try {
      const channel = await api.get(`/api/v1/channels/${seg(channelId)}`);
      model.putChannel({ ...channel, member: true });
      model.resetHistory(channelId, channel.last_seq);
    } catch {
      // A 404 means we left it; the next ready frame removes it.
    }
  }

  /** A direct message learned from an event or by id has no peer yet: ask its members. */
  async function completeDirect(channelId) {
    const channel = model.channels.get(channelId);
    if (!channel || channel.kind !== "dm" || channel.dm_user_id) return;
    try {
      const members = await api.get(`/api/v1/channels/${seg(channelId)}/members`);
      const peer = members.find((m) => m.user_id !== me.id) || members[0];
      if (peer) model.putChannel({ id: channelId, dm_user_id: peer.user_id });
      model.emit({ type: "channels" });
      model.emit({ type: "channel", channelId });
    } catch {
      // Left already; the channel list catches up on the next ready frame.
    }
  }

  model.subscribe((change) => {
    if (change.type === "removed" && currentRoute?.channelId === change.channelId) navigate("/");
    if (change.type === "joined") completeDirect(change.channelId);
  });

  (async () => {
    try {
      model.setChannels(await api.get("/api/v1/channels"));
    } catch {
      // The connection bar and the next attempt tell the user; the list comes with `ready`.
    }
    // A click may have routed already while the list was loading; don't build that view twice.
    if (!currentRoute) renderRoute();
    live.start();
  })();
  window.addEventListener("hashchange", renderRoute);

  return {
    stop() {
      window.removeEventListener("hashchange", renderRoute);
      document.removeEventListener("keydown", onKey);
      search.close();
      clearInterval(bannerTimer);
      live.stop();
      if (view) view.unmount();
      sidebar.unmount();
    },
  };
}

/** "/" outside a text field, or Ctrl-K (⌘K) anywhere: the search shortcut. */
function isSearchKey(event) {
  if (event.altKey || event.isComposing) return false;
  if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "k") return true;
  if (event.key !== "/" || event.ctrlKey || event.metaKey) return false;
  return !event.target.closest?.("input, textarea, select, [contenteditable]");
}

function sameView(a, b) {
  return a.view === b.view && (a.view !== "channel" || a.channelId === b.channelId);
}

/** The start page: where to go next, or how to begin when there is nothing yet. */
function mountHome(main, ctx) {
  const first = ctx.model.memberChannels()[0];
  if (first && window.matchMedia("(min-width: 761px)").matches) {
    navigate(`/c/${first.id}`);
    return { unmount() {} };
  }
  const empty = h(
    "section",
    { class: "empty-state page" },
    h("div", { class: "view-header" }, h("button", { type: "button", class: "icon-btn nav-toggle", "aria-label": "Open navigation", on: { click: ctx.openNav } }, icon("menu"))),
    icon("message", "empty-icon"),
    h("h1", { text: first ? "Pick a conversation" : "Welcome to Rampart" }),
    h("p", {
      class: "muted",
      text: first
        ? "Choose a channel or direct message from the list."
        : "You are not in any channel yet. Create one, browse public channels, or start a direct message from the sidebar.",
    }),
  );
  main.append(empty);
  return { unmount() {} };
}
