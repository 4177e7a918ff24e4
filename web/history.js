// Loading a channel's history into the model: the latest page, earlier pages, a window around one
// message (a search result further back than what is loaded), and the pages after such a window
// until it reaches the present. No DOM: the channel view renders what the model then holds.

import { api, seg } from "./api.js";

const PAGE = 50;
// Messages fetched on each side of a message opened from a search result.
const AROUND_EACH_SIDE = 25;

function pageUrl(channelId, params) {
  return `/api/v1/channels/${seg(channelId)}/messages?${new URLSearchParams(params)}`;
}

function noteOldest(store, messages) {
  for (const m of messages) store.oldestSeq = Math.min(store.oldestSeq ?? Infinity, m.seq);
}

/** The newest page (the channel as it is now). */
export async function loadLatest(model, channelId) {
  const page = await api.get(pageUrl(channelId, { limit: PAGE }));
  model.addHistory(channelId, page.messages, page.has_more, false);
  noteOldest(model.historyOf(channelId), page.messages);
}

/** The page before the oldest loaded message; false when there was nothing to load. */
export async function loadEarlier(model, channelId) {
  const store = model.historyOf(channelId);
  if (store.loadingOlder || !store.hasMore) return false;
  store.loadingOlder = true;
  try {
    const page = await api.get(pageUrl(channelId, { limit: PAGE, before_seq: store.oldestSeq }));
    // The history was replaced meanwhile (a resync, a jump): this page belongs to no window.
    if (model.history.get(channelId) !== store) return false;
    model.addHistory(channelId, page.messages, page.has_more, true);
    noteOldest(store, page.messages);
    return true;
  } finally {
    store.loadingOlder = false;
  }
}

/** Whether `message` is in the loaded window, so showing it needs no loading. */
export function isLoaded(model, message) {
  const store = model.history.get(message.channel_id);
  return Boolean(store?.loaded && store.byId.has(message.id));
}

/** Replaces the loaded history with the messages around `message` (itself included). */
export async function loadAround(model, message) {
  const channelId = message.channel_id;
  const [before, after] = await Promise.all([
    api.get(pageUrl(channelId, { limit: AROUND_EACH_SIDE, before_seq: message.seq + 1 })),
    api.get(pageUrl(channelId, { limit: AROUND_EACH_SIDE, after_seq: message.seq })),
  ]);
  model.setWindow(channelId, [...before.messages, ...after.messages], { hasOlder: before.has_more, hasNewer: after.has_more });
}

/** The page after a window that does not reach the present; false when there was nothing to load. */
export async function loadNewer(model, channelId) {
  const store = model.historyOf(channelId);
  if (store.loadingNewer || !store.newerGap) return false;
  store.loadingNewer = true;
  try {
    const page = await api.get(pageUrl(channelId, { limit: PAGE, after_seq: store.newestSeq }));
    if (model.history.get(channelId) !== store) return false;
    model.addNewer(channelId, page.messages, page.has_more);
    return true;
  } finally {
    store.loadingNewer = false;
  }
}
