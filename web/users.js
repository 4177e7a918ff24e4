// Names of users by id: a cache filled from GET /api/v1/users/{id}, and name and avatar nodes
// that update themselves in place when a name arrives.

import { api, seg } from "./api.js";
import { h } from "./dom.js";
import { hueClass, initials } from "./format.js";
import { userText } from "./text.js";

const known = new Map(); // id → {id, username, display_name}
const pending = new Map(); // id → Promise
const UNKNOWN = "Unknown user";

/** Adds users already in hand (the signed-in user, directory results). */
export function remember(user) {
  if (user && user.id) known.set(user.id, { id: user.id, username: user.username, display_name: user.display_name });
}

export function forgetAll() {
  known.clear();
  pending.clear();
}

/** The user if known now, else null (and a fetch starts). */
export function userNow(id) {
  if (!id) return null;
  if (known.has(id)) return known.get(id);
  load(id);
  return null;
}

/** The user, fetched once per id. */
export function load(id) {
  if (known.has(id)) return Promise.resolve(known.get(id));
  if (!pending.has(id)) {
    const promise = api
      .get(`/api/v1/users/${seg(id)}`)
      .then((user) => {
        remember(user);
        refresh(id);
        return user;
      })
      .catch(() => {
        known.set(id, { id, username: "", display_name: UNKNOWN });
        refresh(id);
        return known.get(id);
      })
      .finally(() => pending.delete(id));
    pending.set(id, promise);
  }
  return pending.get(id);
}

/** The display name if known now, else a placeholder. */
export function displayName(id) {
  return userNow(id)?.display_name || "…";
}

/** A name that fills itself in. */
export function nameNode(id, className = "uname") {
  const el = userText(displayName(id), className);
  el.dataset.uid = id;
  const user = known.get(id);
  if (user?.username) el.title = `@${user.username}`;
  return el;
}

/** An avatar (initials on a colour) that fills itself in. */
export function avatarNode(id, size = "") {
  const el = h("span", { class: `avatar ${hueClass(id)} ${size}`.trim(), "aria-hidden": "true", dataset: { avatarUid: id } });
  el.textContent = known.has(id) ? initials(known.get(id).display_name) : "";
  userNow(id);
  return el;
}

/** Updates every name and avatar node of `id` on the page. */
function refresh(id) {
  const user = known.get(id);
  if (!user) return;
  for (const el of document.querySelectorAll(`bdi[data-uid="${CSS.escape(id)}"]`)) {
    const fresh = userText(user.display_name, el.className);
    fresh.dataset.uid = id;
    if (user.username) fresh.title = `@${user.username}`;
    el.replaceWith(fresh);
  }
  for (const el of document.querySelectorAll(`[data-avatar-uid="${CSS.escape(id)}"]`)) {
    el.textContent = initials(user.display_name);
  }
}
