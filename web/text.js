// Rendering of text written by users (message bodies, names, topics, search results) as inert
// DOM: text nodes, links only for http(s) URLs, <mark> around search matches, and
// direction-control characters shown and contained.

import { h } from "./dom.js";

// Bidirectional embedding, override and isolate controls (LRE…RLO, LRI…PDI) and the marks.
// Each run of them is wrapped in its own isolating element, so its effect ends where that element
// ends: a right-to-left override cannot reorder the text after it (the "gnp.exe" trick).
const BIDI_CONTROL_RUNS = /[\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]+/g;
// Runs labelled in one text. Past it, further controls are left out of the rendering (they are
// invisible, and so cannot reorder anything) and one last label counts them: each label is an
// element to lay out, and a message of 8,000 of them took hundreds of milliseconds to show.
const BIDI_LABELS_MAX = 64;
// A URL candidate: http(s)://, then anything but spaces, quotes, angle brackets and controls.
const URL_CANDIDATE = /\bhttps?:\/\/[^\s<>"'`\u0000-\u001F\u007F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]+/gi;
// Characters trimmed off a candidate's end: sentence punctuation is not part of the link.
const TRAILING_PUNCTUATION = new Set([".", ",", ";", ":", "!", "?", "*", "_", "~"]);
// Each closing bracket with its opening one: a closing bracket at the end is trimmed only while
// the candidate holds more of it than of its opener ("wiki/Foo_(bar)" keeps its ")").
const OPENER_OF = new Map([[")", "("], ["]", "["], ["}", "{"]]);
const LINK_CHARS_MAX = 2048;
// A candidate longer than this is not a link at all, and is not looked into: a link of at most
// LINK_CHARS_MAX with room for trailing punctuation after it. One message can hold 16,000
// characters, and whatever it holds is rendered on every member's screen.
const CANDIDATE_CHARS_MAX = 2 * LINK_CHARS_MAX;

/** Code point label such as "U+202E". */
function codePoint(ch) {
  return "U+" + ch.codePointAt(0).toString(16).toUpperCase().padStart(4, "0");
}

/** The label of a run of direction controls: its code points, and how many when repeated. */
function controlsLabel(run) {
  const distinct = [...new Set(run)].map(codePoint);
  return distinct.join(" ") + (run.length > distinct.length ? ` ×${run.length}` : "");
}

/** Appends `text` to `parent`, with each run of direction controls wrapped and labelled. */
function appendPlain(parent, text) {
  let pending = "";
  let last = 0;
  let labels = 0;
  let hidden = 0;
  for (const match of text.matchAll(BIDI_CONTROL_RUNS)) {
    pending += text.slice(last, match.index);
    last = match.index + match[0].length;
    if (labels === BIDI_LABELS_MAX) {
      hidden += match[0].length;
      continue;
    }
    if (pending) parent.append(document.createTextNode(pending));
    pending = "";
    const cp = controlsLabel(match[0]);
    const title = `Invisible direction control${match[0].length > 1 ? "s" : ""} ${cp}`;
    parent.append(h("span", { class: "bidi-ctl", dir: "ltr", dataset: { cp }, title }, match[0]));
    labels += 1;
  }
  pending += text.slice(last);
  if (pending) parent.append(document.createTextNode(pending));
  if (hidden) {
    const title = `${hidden} more invisible direction controls, left out`;
    parent.append(h("span", { class: "bidi-ctl", dir: "ltr", dataset: { cp: `+${hidden}` }, title }));
  }
}

/**
 * Trims trailing punctuation (and unbalanced closing brackets) off a URL candidate, in time
 * linear in its length: brackets are counted once, then characters are dropped from the end
 * while each is punctuation or a closing bracket that outnumbers its opener.
 */
function trimUrl(candidate) {
  const counts = new Map([["(", 0], [")", 0], ["[", 0], ["]", 0], ["{", 0], ["}", 0]]);
  for (const ch of candidate) if (counts.has(ch)) counts.set(ch, counts.get(ch) + 1);
  let end = candidate.length;
  while (end > 0) {
    const ch = candidate[end - 1];
    const opener = OPENER_OF.get(ch);
    if (opener !== undefined && counts.get(opener) < counts.get(ch)) counts.set(ch, counts.get(ch) - 1);
    else if (!TRAILING_PUNCTUATION.has(ch)) break;
    end -= 1;
  }
  return candidate.slice(0, end);
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
    if (match[0].length > CANDIDATE_CHARS_MAX) continue;
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
