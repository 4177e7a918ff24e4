// Message search: the search box (in the sidebar; "/" or Ctrl-K focuses it) and the results
// panel over the main view — matches newest first with their channel, sender and time, the
// matched words in <mark>, "load more", the server's sentence for a query it refuses. Opening a
// result hands the message to the shell, which shows it in its channel (or thread).

import { api, describe } from "./api.js";
import { h, icon, iconButton, replace } from "./dom.js";
import { fullTime, stamp } from "./format.js";
import { excerpt, matchRanges, queryTerms } from "./highlight.js";
import { markedText, userText } from "./text.js";
import { nameNode } from "./users.js";

const PAGE = 20;
const QUERY_CHARS_MAX = 500;
const PHONE = "(max-width: 760px)";

/** Builds the search box and panel; the shell places them. `ctx.openMessage(message)` opens a result. */
export function mountSearch(ctx) {
  const input = h("input", {
    id: "search-input",
    type: "search",
    placeholder: "Search messages",
    autocomplete: "off",
    spellcheck: "false",
    enterkeyhint: "search",
    maxlength: QUERY_CHARS_MAX,
    "aria-controls": "search-panel",
    "aria-keyshortcuts": "/ Control+K",
  });
  const form = h(
    "form",
    { class: "search-form", role: "search", id: "search-form", novalidate: true },
    h("label", { for: "search-input", class: "sr-only", text: "Search messages" }),
    icon("search"),
    input,
    h("kbd", { class: "search-key", "aria-hidden": "true", title: "Press / or Ctrl+K to search", text: "/" }),
  );

  const title = h("h2", { id: "search-title", tabindex: "-1", text: "Search" });
  const status = h("p", { class: "search-status muted", id: "search-status", role: "status", "aria-live": "polite" });
  const error = h("p", { class: "form-status error", id: "search-error", role: "alert", hidden: true });
  const results = h("ol", { class: "search-results", id: "search-results", "aria-labelledby": "search-title" });
  const more = h("button", { type: "button", class: "btn small ghost", id: "search-more", hidden: true, text: "Load more results", on: { click: () => run(state.query, state.nextBefore) } });
  const panel = h(
    "section",
    { class: "search-panel", id: "search-panel", "aria-labelledby": "search-title", hidden: true },
    h(
      "header",
      { class: "view-header" },
      h("button", { type: "button", class: "icon-btn search-nav", "aria-label": "Open navigation", on: { click: ctx.openNav } }, icon("menu")),
      h("div", { class: "conv-heading" }, title, status),
      iconButton("close", "Close search", () => close(true)),
    ),
    h("div", { class: "search-scroll" }, error, results, h("div", { class: "search-foot" }, more)),
  );

  const state = { query: "", terms: [], shown: new Set(), nextBefore: null, generation: 0 };

  async function run(query, before = null) {
    const generation = ++state.generation;
    if (!before) {
      Object.assign(state, { query, terms: queryTerms(query), shown: new Set(), nextBefore: null });
      replace(title, "Results for ", h("q", {}, userText(query)));
      results.replaceChildren();
    }
    error.hidden = true;
    more.disabled = true;
    status.textContent = "Searching…";
    const params = new URLSearchParams({ q: query, limit: String(PAGE) });
    if (before) params.set("before", before);
    try {
      const page = await api.get(`/api/v1/search?${params}`);
      if (generation !== state.generation) return;
      for (const message of page.results) {
        if (state.shown.has(message.id)) continue;
        state.shown.add(message.id);
        results.append(resultItem(message));
      }
      state.nextBefore = page.next_before;
      const n = state.shown.size;
      status.textContent = n ? `${n}${state.nextBefore ? "+" : ""} ${n === 1 ? "message" : "messages"}` : "";
      if (!n) results.append(emptyState());
    } catch (failure) {
      if (generation !== state.generation) return;
      status.textContent = "";
      error.hidden = false;
      error.textContent = describe(failure);
      if (!before) state.nextBefore = null;
    } finally {
      if (generation === state.generation) {
        more.hidden = !state.nextBefore;
        more.disabled = false;
      }
    }
  }

  function emptyState() {
    return h(
      "li",
      { class: "empty-state small search-empty" },
      icon("search", "empty-icon"),
      h("p", { class: "strong", text: "No messages match" }),
      h("p", { class: "muted small", text: 'Every word must appear. Try fewer words, a "quoted phrase", a prefix such as deploy*, from:@username or in:#channel.' }),
    );
  }

  function where(channelId) {
    const channel = ctx.model.channels.get(channelId);
    if (!channel) return h("span", { class: "hit-channel muted", text: "Unknown channel" });
    if (channel.kind === "dm") return h("span", { class: "hit-channel" }, icon("user"), nameNode(channel.dm_user_id || "", "hit-channel-name"));
    return h("span", { class: "hit-channel" }, icon(channel.kind === "private" ? "lock" : "hash"), userText(channel.name || "", "hit-channel-name"));
  }

  function resultItem(message) {
    const body = message.body ?? "";
    const part = excerpt(body, matchRanges(body, state.terms));
    return h(
      "li",
      {},
      h(
        "button",
        { type: "button", class: "search-hit", dataset: { messageId: message.id, channelId: message.channel_id }, on: { click: () => open(message) } },
        h(
          "span",
          { class: "hit-head" },
          where(message.channel_id),
          nameNode(message.sender_id, "hit-sender"),
          h("time", { datetime: message.created_at, title: fullTime(message.created_at), text: stamp(message.created_at) }),
          message.thread_id ? h("span", { class: "pill", text: "in a thread" }) : null,
        ),
        message.deleted ? h("em", { class: "hit-body muted", text: "This message was deleted." }) : h("span", { class: "hit-body", dir: "auto" }, markedText(part.text, part.ranges)),
      ),
    );
  }

  function open(message) {
    close(false);
    ctx.openMessage(message);
  }

  /** Hides the panel (results are kept for the next search); `refocus` returns to the box. */
  function close(refocus) {
    if (panel.hidden) return;
    panel.hidden = true;
    // On a phone the box is in the closed sidebar: focus would land off screen.
    if (refocus && !window.matchMedia(PHONE).matches) input.focus();
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const query = input.value.trim();
    if (!query) return;
    panel.hidden = false;
    run(query);
    if (window.matchMedia(PHONE).matches) {
      // The box is in the sidebar, which covers the panel on a phone: put it away.
      ctx.closeNav();
      title.focus();
    }
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown" && !panel.hidden) {
      event.preventDefault();
      results.querySelector(".search-hit")?.focus();
    } else if (event.key === "Escape" && !panel.hidden) {
      event.preventDefault();
      close(true);
    }
  });
  panel.addEventListener("keydown", (event) => {
    const hits = [...results.querySelectorAll(".search-hit")];
    const at = hits.indexOf(document.activeElement);
    if (event.key === "Escape") {
      event.preventDefault();
      close(true);
    } else if (event.key === "ArrowDown" && at !== -1) {
      event.preventDefault();
      (hits[at + 1] || (more.hidden ? null : more))?.focus();
    } else if (event.key === "ArrowUp" && at !== -1) {
      event.preventDefault();
      (at === 0 ? input : hits[at - 1]).focus();
    }
  });

  return {
    form,
    panel,
    /** Puts the cursor in the search box (opening the navigation on a phone). */
    focus() {
      if (window.matchMedia(PHONE).matches) ctx.openNav();
      input.focus();
      input.select();
    },
    close: () => close(false),
  };
}
