// The sidebar: the search box (search.js), channels and direct messages with unread counts,
// buttons to create, browse and start conversations, and the signed-in user's links (account,
// admin console, sign out).

import { api } from "./api.js";
import { h, icon, iconButton, replace } from "./dom.js";
import { userText } from "./text.js";
import { avatarNode, nameNode } from "./users.js";
import { browseChannels, newChannel, newDirectMessage } from "./dialogs.js";

const UNREAD_SHOWN_MAX = 99;

export function mountSidebar(el, ctx, { searchForm }) {
  const { model, me } = ctx;
  const channelList = h("ul", { class: "nav-list", id: "channel-list", "aria-label": "Channels" });
  const dmList = h("ul", { class: "nav-list", id: "dm-list", "aria-label": "Direct messages" });
  const status = h("span", { class: "conn-dot", title: "Connecting", "aria-hidden": "true" });
  let route = { view: "home" };

  const isAdmin = me.role === "admin" || me.role === "owner";
  replace(
    el,
    h(
      "div",
      { class: "sidebar-head" },
      h("a", { class: "brand small", href: "#/" }, h("img", { src: "/assets/icon.svg", alt: "", width: 24, height: 24 }), h("span", { text: "Rampart" })),
      status,
      iconButton("close", "Close navigation", ctx.closeNav, { className: "icon-btn nav-close" }),
    ),
    searchForm,
    h(
      "div",
      { class: "sidebar-scroll" },
      section("Channels", [
        iconButton("compass", "Browse channels", () => browseChannels(ctx)),
        iconButton("plus", "Create a channel", () => newChannel(ctx)),
      ], channelList),
      section("Direct messages", [iconButton("plus", "New direct message", () => newDirectMessage(ctx))], dmList),
    ),
    h(
      "div",
      { class: "sidebar-foot" },
      h("a", { class: "me", href: "#/account", id: "nav-account", title: "Your account" }, avatarNode(me.id), h("span", { class: "me-names" }, nameNode(me.id, "me-name"), h("span", { class: "me-role", text: me.role }))),
      isAdmin ? h("a", { class: "foot-link", href: "#/admin/users", id: "nav-admin" }, icon("shield"), h("span", { text: "Admin console" })) : null,
      h("button", { type: "button", class: "foot-link", id: "sign-out", on: { click: signOut } }, icon("logout"), h("span", { text: "Sign out" })),
    ),
  );

  async function signOut() {
    try {
      await api.post("/api/v1/auth/logout");
    } catch {
      // Signed out already, or offline: the page forgets the session either way.
    }
    ctx.signOut();
  }

  function render() {
    const channels = model.memberChannels();
    const rooms = channels.filter((c) => c.kind !== "dm").sort((a, b) => (a.name || "").localeCompare(b.name || ""));
    const dms = channels.filter((c) => c.kind === "dm");
    // Re-rendering must not steal keyboard focus from someone moving through the list.
    const focused = el.contains(document.activeElement) ? document.activeElement.dataset.channelId : null;
    replace(channelList, rooms.length ? rooms.map(channelItem) : h("li", { class: "nav-empty", text: "No channels yet." }));
    replace(dmList, dms.length ? dms.map(channelItem) : h("li", { class: "nav-empty", text: "No conversations yet." }));
    if (focused) el.querySelector(`[data-channel-id="${CSS.escape(focused)}"]`)?.focus();
    const unread = channels.reduce((n, c) => n + (c.unread || 0), 0);
    document.title = `${unread ? `(${unread}) ` : ""}${document.title.replace(/^\(\d+\) /, "")}`;
  }

  function channelItem(channel) {
    const active = route.channelId === channel.id;
    const unread = channel.unread || 0;
    const label =
      channel.kind === "dm"
        ? [avatarNode(channel.dm_user_id || "", "tiny"), nameNode(channel.dm_user_id || "", "nav-name")]
        : [icon(channel.kind === "private" ? "lock" : "hash"), userText(channel.name || "", "nav-name")];
    return h(
      "li",
      {},
      h(
        "a",
        {
          href: `#/c/${channel.id}`,
          class: `nav-item${unread ? " has-unread" : ""}${active ? " active" : ""}`,
          "aria-current": active ? "page" : null,
          dataset: { channelId: channel.id },
        },
        label,
        unread
          ? h("span", { class: "badge", "aria-label": `${unread} unread`, text: unread > UNREAD_SHOWN_MAX ? `${UNREAD_SHOWN_MAX}+` : unread })
          : null,
      ),
    );
  }

  const unsubscribe = model.subscribe((change) => {
    if (change.type === "channels") render();
  });
  const onConnection = (connection) => {
    status.dataset.state = connection.state;
    status.title = connection.state === "live" ? "Connected" : connection.state === "offline" ? "Offline" : "Reconnecting";
  };
  ctx.connection.listeners.add(onConnection);
  render();

  return {
    highlight(next) {
      route = next;
      render();
      for (const link of el.querySelectorAll(".foot-link, .me")) {
        const target = link.getAttribute("href") || "";
        const current = target === "#/account" ? next.view === "account" : target.startsWith("#/admin") && next.view === "admin";
        link.classList.toggle("active", current);
        if (current) link.setAttribute("aria-current", "page");
        else link.removeAttribute("aria-current");
      }
    },
    unmount() {
      unsubscribe();
      ctx.connection.listeners.delete(onConnection);
    },
  };
}

function section(title, actions, list) {
  const id = `nav-${title.toLowerCase().replace(/\s+/g, "-")}`;
  return h(
    "section",
    { class: "nav-section", "aria-labelledby": id },
    h("div", { class: "nav-section-head" }, h("h2", { id, text: title }), h("div", { class: "nav-actions" }, actions)),
    list,
  );
}
