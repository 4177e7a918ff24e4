// The HTTP API of API.md, as the client uses it: JSON requests with the session cookie, errors
// turned into ApiError with the server's stable code, and one hook for "the session has ended".

export class ApiError extends Error {
  constructor(status, code, message, retryAfterSecs = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfterSecs = retryAfterSecs;
  }
}

let sessionEndedHandler = null;
// A request that replaces the session cookie (a password change) while it runs: the server ends
// the old session before the new cookie arrives, so a 401 to a request sent with the old cookie —
// while the change ran, or before it started — waits for it and retries once, even when the 401
// lands just after the change has finished.
let rotation = null;
// Bumped when a cookie-replacing request starts and when it ends.
let rotationEpoch = 0;
// True only while `rotatingSession` starts its own request (which must not wait for itself).
let startingRotation = false;

/** Runs `send()`, a request that gives this page a new session cookie. */
export async function rotatingSession(send) {
  startingRotation = true;
  let running;
  try {
    running = send();
  } finally {
    startingRotation = false;
  }
  const settled = running.then(
    () => {},
    () => {},
  );
  rotation = settled;
  rotationEpoch += 1;
  try {
    return await running;
  } finally {
    if (rotation === settled) rotation = null;
    rotationEpoch += 1;
  }
}

/** Called once whenever a request finds the session gone (401 `unauthenticated`). */
export function onSessionEnded(handler) {
  sessionEndedHandler = handler;
}

/**
 * Sends one request. Cookie authentication: the browser adds the cookie and, for state changes,
 * the same-origin `Origin` header the server's CSRF check asks for.
 */
export async function request(method, path, body, retried = false) {
  // Read before the first await: whether this is the cookie-replacing request itself, and which
  // cookie it goes out with.
  const own = startingRotation;
  const sent = { rotating: rotation !== null, epoch: rotationEpoch };
  const init = { method, credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, "network", "Cannot reach the server. Check your connection and try again.");
  }
  if (response.status === 204 || response.status === 205) return null;
  const data = await response.json().catch(() => null);
  if (response.ok) return data;
  const code = data?.error?.code || `http_${response.status}`;
  const message = data?.error?.message || `The server answered ${response.status}.`;
  const retry = Number.parseInt(response.headers.get("Retry-After") || "", 10);
  const error = new ApiError(response.status, code, message, Number.isFinite(retry) ? retry : null);
  const cookieChanged = sent.rotating || rotation !== null || rotationEpoch !== sent.epoch;
  if (code === "unauthenticated" && cookieChanged && !own && !retried) {
    if (rotation) await rotation;
    return request(method, path, body, true);
  }
  if (code === "unauthenticated" && sessionEndedHandler) sessionEndedHandler();
  throw error;
}

export const api = {
  get: (path) => request("GET", path),
  post: (path, body = {}) => request("POST", path, body),
  patch: (path, body) => request("PATCH", path, body),
  del: (path) => request("DELETE", path),
};

/** Encodes a path segment (ids come from the server, but never trust a string into a URL). */
export function seg(value) {
  return encodeURIComponent(String(value));
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

/** A wait in words: "40 seconds", "5 minutes". */
export function inWords(secs) {
  if (secs < 90) return plural(Math.max(1, Math.round(secs)), "second");
  if (secs < 5400) return plural(Math.round(secs / 60), "minute");
  return plural(Math.round(secs / 3600), "hour");
}

/** A sentence for the person at the keyboard, from an error's stable code. */
export function describe(error) {
  if (!(error instanceof ApiError)) return "Something went wrong in the page. Reload and try again.";
  switch (error.code) {
    case "network":
      return error.message;
    case "too_many_requests":
      return error.retryAfterSecs
        ? `Too many attempts. Try again in ${inWords(error.retryAfterSecs)}.`
        : "Too many requests. Wait a moment and try again.";
    case "invalid_credentials":
      return "The username or password is incorrect.";
    case "unauthenticated":
      return "Your session has ended. Sign in again to continue.";
    case "forbidden":
      return error.message && error.message !== "You are not allowed to do this."
        ? error.message
        : "You don't have permission to do that.";
    case "not_found":
      return "That no longer exists, or you can't see it.";
    case "cross_origin_request":
      return "The request was refused because it did not come from this site. Reload the page.";
    case "last_owner":
      return "The server must keep at least one active owner: promote someone else first.";
    case "invalid_invitation":
      return "This invitation is invalid, already used or expired. Ask an administrator for a new link.";
    case "unavailable":
    case "internal":
    case "request_timeout":
      return "The server could not do that just now. Try again in a moment.";
    case "payload_too_large":
      return "That is too large to send.";
    default:
      // Validation codes (invalid_input, weak_password, conflict…) carry a specific sentence.
      return error.message;
  }
}
