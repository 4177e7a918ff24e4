// Formatting of times, days, user agents and avatars for display. Pure functions, no DOM.

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" });
const dateFormat = new Intl.DateTimeFormat(undefined, { weekday: "long", month: "long", day: "numeric" });
const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
const shortFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

function toDate(value) {
  const date = value instanceof Date ? value : new Date(value);
  return Number.isNaN(date.getTime()) ? null : date;
}

/** "14:05" (in the reader's locale). */
export function clock(value) {
  const date = toDate(value);
  return date ? timeFormat.format(date) : "";
}

/** "12 Mar 2026, 14:05:09". */
export function fullTime(value) {
  const date = toDate(value);
  return date ? fullFormat.format(date) : "—";
}

/** A key for the calendar day in local time. */
export function dayKey(value) {
  const date = toDate(value);
  return date ? `${date.getFullYear()}-${date.getMonth()}-${date.getDate()}` : "";
}

/** "14:05" today, "Yesterday 14:05", else "12 Mar 2026, 14:05". */
export function stamp(value) {
  const date = toDate(value);
  if (!date) return "";
  const day = dayLabel(date);
  if (day === "Today") return clock(date);
  if (day === "Yesterday") return `${day} ${clock(date)}`;
  return shortFormat.format(date);
}

/** "Today", "Yesterday" or "Monday, March 12". */
export function dayLabel(value) {
  const date = toDate(value);
  if (!date) return "";
  const today = new Date();
  const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
  if (dayKey(date) === dayKey(today)) return "Today";
  if (dayKey(date) === dayKey(yesterday)) return "Yesterday";
  return dateFormat.format(date);
}

/** "just now", "5 minutes ago", "3 days ago". */
export function ago(value) {
  const date = toDate(value);
  if (!date) return "never";
  const secs = Math.max(0, (Date.now() - date.getTime()) / 1000);
  if (secs < 60) return "just now";
  const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  if (secs < 3600) return rtf.format(-Math.round(secs / 60), "minute");
  if (secs < 86400) return rtf.format(-Math.round(secs / 3600), "hour");
  return rtf.format(-Math.round(secs / 86400), "day");
}

/** Up to two initials for an avatar. */
export function initials(name) {
  const words = String(name || "?").trim().split(/\s+/).filter(Boolean);
  const letters = words.length > 1 ? [words[0], words[words.length - 1]] : [words[0] || "?"];
  return letters.map((w) => Array.from(w)[0] || "").join("").toUpperCase() || "?";
}

/** A stable avatar colour class (1–8) for a user id. */
export function hueClass(id) {
  let hash = 0;
  for (const ch of String(id)) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return `hue-${(hash % 8) + 1}`;
}

/** "Firefox on Linux" from a User-Agent string (best effort, for the sessions list). */
export function device(userAgent) {
  const ua = String(userAgent || "");
  if (!ua) return "Unknown device";
  const browser =
    (/Edg\//.test(ua) && "Edge") ||
    (/Firefox\//.test(ua) && "Firefox") ||
    ((/Chrome\/|Chromium\//.test(ua) || /HeadlessChrome/.test(ua)) && "Chrome") ||
    (/Safari\//.test(ua) && "Safari") ||
    (/curl\//.test(ua) && "curl") ||
    "Browser";
  const os =
    (/Android/.test(ua) && "Android") ||
    (/iPhone|iPad/.test(ua) && "iOS") ||
    (/Windows/.test(ua) && "Windows") ||
    (/Mac OS X|Macintosh/.test(ua) && "macOS") ||
    (/Linux/.test(ua) && "Linux") ||
    "";
  return os ? `${browser} on ${os}` : browser;
}
