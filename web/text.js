// Rendering of text written by users (message bodies, names, topics, search results) as inert
// DOM: text nodes, links only for http(s) URLs, <mark> around search matches, and
// direction-control characters shown and contained.

import { h } from "./dom.js";

// Bidirectional embedding, override and isolate controls (LRE…RLO, LRI…PDI) and the marks.
// Each is wrapped in its own isolating element, so its effect ends where that element ends:
// a right-to-left override cannot reorder the text after it (the "gnp.exe" trick).
const BIDI_CONTROLS = /[\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]/;
// A URL candidate: http(s)://, then anything but spaces, quotes, angle brackets and controls.
const URL_CANDIDATE = /\bhttps?:\/\/[^\s<>"'`\u0000-\u001F\u007F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]+/gi;
const TRAILING_PUNCTUATION = /[.,;:!?*_~]+$/;
const LINK_CHARS_MAX = 2048;

/** Code point label such as "U+202E". */
function codePoint(ch) {
  return "U+" + ch.codePointAt(0).toString(16).toUpperCase().padStart(4, "0");
}

/** Appends `text` to `parent`, with each direction control wrapped and labelled. */
function appendPlain(parent, text) {
  let rest = text;
  while (rest) {
    const match = BIDI_CONTROLS.exec(rest);
    if (!match) {
      parent.append(document.createTextNode(rest));
      return;
    }
    if (match.index > 0) parent.append(document.createTextNode(rest.slice(0, match.index)));
    const cp = codePoint(match[0]);
    parent.append(h("span", { class: "bidi-ctl", dir: "ltr", dataset: { cp }, title: `Invisible direction control ${cp}` }, match[0]));
    rest = rest.slice(match.index + match[0].length);
  }
}

/** Trims trailing punctuation (and an unbalanced closing bracket) off a URL candidate. */
function trimUrl(candidate) {
  let url = candidate.replace(TRAILING_PUNCTUATION, "");
  for (const [open, close] of [["(", ")"], ["[", "]"], ["{", "}"]]) {
    while (url.endsWith(close) && url.split(open).length < url.split(close).length) url = url.slice(0, -1);
    url = url.replace(TRAILING_PUNCTUATION, "");
  }
  return url;
}

/** The href for a candidate, only if it parses as an http or https URL. */
export function safeHref(candidate) {
  if (candidate.length > LINK_CHARS_MAX) return null;
  let url;
  try {
    url = new URL(candidate);
  } catch {
    return null;
  }
  return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
}

/**
 * A fragment for a message body: text, clickable http(s) links (opening in a new tab, with no
 * opener and no referrer), and contained direction controls. Line breaks are kept by CSS.
 */
export function richText(text) {
  const source = String(text ?? "");
  const fragment = document.createDocumentFragment();
  let last = 0;
  for (const match of source.matchAll(URL_CANDIDATE)) {
    const candidate = trimUrl(match[0]);
    const href = safeHref(candidate);
    if (!href) continue;
    appendPlain(fragment, source.slice(last, match.index));
    fragment.append(h("a", { href, target: "_blank", rel: "noopener noreferrer nofollow", class: "link" }, candidate));
    last = match.index + candidate.length;
  }
  appendPlain(fragment, source.slice(last));
  return fragment;
}

/**
 * Plain text (no links) with the [start, end) ranges, in order, wrapped in <mark>: a search
 * result with its matches. Each piece is a text node, direction controls contained as above.
 */
export function markedText(text, ranges) {
  const source = String(text ?? "");
  const fragment = document.createDocumentFragment();
  let last = 0;
  for (const [start, end] of ranges) {
    if (start < last || end <= start || end > source.length) continue;
    appendPlain(fragment, source.slice(last, start));
    const mark = h("mark");
    appendPlain(mark, source.slice(start, end));
    fragment.append(mark);
    last = end;
  }
  appendPlain(fragment, source.slice(last));
  return fragment;
}

/** A name, topic or other short user text, isolated from the text around it. */
export function userText(text, className = "") {
  const el = h("bdi", { class: className || null });
  appendPlain(el, String(text ?? ""));
  return el;
}
