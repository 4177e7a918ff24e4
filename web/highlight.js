// Search-match highlighting, without DOM: a query read the way the server reads it (all words,
// "quoted phrases", prefix* terms; from:@user and in:#channel are filters, not text), the ranges
// of a text that match its terms, and an excerpt of a long text around the first match.
// Best effort and for the eye only: which messages match is decided by the server.

// The scripts the server cuts into character bigrams (rampart-core's search.rs): here each such
// character is a word of its own, and a CJK term matches characters that touch in the text.
const CJK = /[\u3040-\u30FF\u3400-\u4DBF\u4E00-\u9FFF\uF900-\uFAFF\uAC00-\uD7AF\u{20000}-\u{2FA1F}]/u;
const PREFIX_CHARS_MIN = 3;
const RANGES_MAX = 200;
const EXCERPT_CHARS_MAX = 320;
// Text kept before the first match when a long text is cut.
const EXCERPT_LEAD_CHARS = 80;

const segmenter = new Intl.Segmenter(undefined, { granularity: "word" });

function normalize(text) {
  return text.normalize("NFKC").toLowerCase();
}

/** The words of `text`, normalized, each with its [start, end) in `text`. */
function words(text) {
  const out = [];
  for (const { segment, index, isWordLike } of segmenter.segment(text)) {
    if (!isWordLike) continue;
    if (![...segment].every((ch) => CJK.test(ch))) {
      out.push({ word: normalize(segment), start: index, end: index + segment.length, cjk: false });
      continue;
    }
    let offset = index;
    for (const ch of segment) {
      out.push({ word: normalize(ch), start: offset, end: offset + ch.length, cjk: true });
      offset += ch.length;
    }
  }
  return out;
}

/** The terms of a query: `{words}` (consecutive words: a word, a phrase) or `{prefix}`. */
export function queryTerms(query) {
  const terms = [];
  let rest = String(query ?? "").trim();
  while (rest) {
    if (rest.startsWith('"')) {
      const close = rest.indexOf('"', 1);
      const found = words(normalize(close === -1 ? rest.slice(1) : rest.slice(1, close)));
      if (found.length) terms.push({ words: found });
      rest = close === -1 ? "" : rest.slice(close + 1).trimStart();
      continue;
    }
    const space = rest.search(/\s/);
    const token = space === -1 ? rest : rest.slice(0, space);
    rest = space === -1 ? "" : rest.slice(space).trimStart();
    if (token.startsWith("from:") || token.startsWith("in:")) continue;
    if (token.endsWith("*")) {
      const stem = normalize(token.slice(0, -1));
      if ([...stem].length >= PREFIX_CHARS_MIN) terms.push({ prefix: stem });
      continue;
    }
    const found = words(normalize(token));
    if (found.length) terms.push({ words: found });
  }
  return terms;
}

/** Where `wanted` (query words) occurs in `found` (text words) starting at `i`, or null. */
function matchAt(found, wanted, i) {
  for (let k = 0; k < wanted.length; k += 1) {
    const word = found[i + k];
    if (!word || word.word !== wanted[k].word) return null;
    // Characters that touch in the query must touch in the text ("搜索" is not "搜 索").
    const joined = k > 0 && wanted[k].cjk && wanted[k - 1].cjk && wanted[k - 1].end === wanted[k].start;
    if (joined && found[i + k - 1].end !== word.start) return null;
  }
  return [found[i].start, found[i + wanted.length - 1].end];
}

/** The [start, end) ranges of `text` that match `terms`, in order, overlaps merged. */
export function matchRanges(text, terms) {
  const found = words(String(text ?? ""));
  const ranges = [];
  for (const term of terms) {
    for (let i = 0; i < found.length && ranges.length < RANGES_MAX * 2; i += 1) {
      const range = term.prefix ? (!found[i].cjk && found[i].word.startsWith(term.prefix) ? [found[i].start, found[i].end] : null) : matchAt(found, term.words, i);
      if (range) ranges.push(range);
    }
  }
  ranges.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const merged = [];
  for (const [start, end] of ranges) {
    const last = merged[merged.length - 1];
    if (last && start < last[1]) last[1] = Math.max(last[1], end);
    else merged.push([start, end]);
  }
  return merged.slice(0, RANGES_MAX);
}

const isHighSurrogate = (code) => code >= 0xd800 && code <= 0xdbff;
const isLowSurrogate = (code) => code >= 0xdc00 && code <= 0xdfff;

/** A long text cut around its first match, with "…" where it was cut; ranges moved to match. */
export function excerpt(text, ranges, charsMax = EXCERPT_CHARS_MAX) {
  if (text.length <= charsMax) return { text, ranges };
  const first = ranges.length ? ranges[0][0] : 0;
  let start = Math.max(0, first - EXCERPT_LEAD_CHARS);
  if (start > 0) {
    // Begin at a word when there is a space before the match.
    const space = text.slice(start, first).search(/\s/);
    if (space !== -1) start += space + 1;
    if (isLowSurrogate(text.charCodeAt(start))) start += 1;
  }
  let end = Math.min(text.length, start + charsMax);
  if (end < text.length && isHighSurrogate(text.charCodeAt(end - 1))) end -= 1;
  const lead = start > 0 ? "…" : "";
  const shift = lead.length - start;
  const kept = ranges
    .filter(([s, e]) => e > start && s < end)
    .map(([s, e]) => [Math.max(s, start) + shift, Math.min(e, end) + shift]);
  return { text: `${lead}${text.slice(start, end)}${end < text.length ? "…" : ""}`, ranges: kept };
}
