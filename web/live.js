// The live connection to /api/v1/events: connects with the session cookie, resumes from the
// client's per-channel cursors right after `ready`, reconnects with capped exponential back-off
// (at once when the browser comes back online), and reports its state for the "reconnecting" bar.

import { api } from "./api.js";

const BACKOFF_MS_FIRST = 500;
const BACKOFF_MS_MAX = 15_000;
const TYPING_SEND_MS_MIN = 2_500;
// Client-chosen close codes (4000–4999 are the application's).
const CLOSE_OFFLINE = 4000;
const CLOSE_STOPPED = 4001;

export class Live {
  /**
   * `cursors()` → {channel_id: seq the client has}; `onFrame(frame)` for ready, event, resync and
   * typing frames; `onState({state, retryAt})`. A lost session is reported by the API module's
   * hook, when the next request finds it gone.
   */
  constructor({ cursors, onFrame, onState }) {
    this.cursors = cursors;
    this.onFrame = onFrame;
    this.onState = onState;
    this.socket = null;
    this.failures = 0;
    this.timer = null;
    this.stopped = false;
    this.state = "connecting";
    this.lastTyping = new Map();
    this.handleOnline = () => this.retryNow();
    this.handleOffline = () => this.dropForOffline();
    window.addEventListener("online", this.handleOnline);
    window.addEventListener("offline", this.handleOffline);
  }

  start() {
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    window.removeEventListener("online", this.handleOnline);
    window.removeEventListener("offline", this.handleOffline);
    if (this.socket) {
      this.socket.intentional = true;
      this.socket.close(CLOSE_STOPPED, "stopped");
    }
    this.socket = null;
  }

  setState(state, retryAt = null) {
    this.state = state;
    this.onState({ state, retryAt });
  }

  /** Reconnects now (the "Retry now" button, or the browser coming back online). */
  retryNow() {
    if (this.stopped || this.state === "live" || this.socket || this.connecting) return;
    clearTimeout(this.timer);
    this.connect();
  }

  /** The browser says the network is gone: an open socket would hang until a timeout, so drop it. */
  dropForOffline() {
    if (this.stopped) return;
    clearTimeout(this.timer);
    if (this.socket) {
      const socket = this.socket;
      this.socket = null;
      socket.intentional = true;
      socket.close(CLOSE_OFFLINE, "offline");
    }
    this.setState("offline");
  }

  async connect() {
    if (this.stopped) return;
    if (!navigator.onLine) return this.setState("offline");
    this.setState(this.failures > 0 ? "reconnecting" : "connecting");
    // A cheap authenticated request first: it tells a lost session (sign in again) from a lost
    // network (try again), which a failed WebSocket upgrade cannot.
    this.connecting = true;
    try {
      await api.get("/api/v1/users/me");
    } catch (error) {
      if (error.code === "unauthenticated") return; // the API hook has signed the page out
      return this.scheduleRetry();
    } finally {
      this.connecting = false;
    }
    if (this.stopped || this.socket || !navigator.onLine) return;
    const socket = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/v1/events`);
    this.socket = socket;
    let sessionEnded = false;
    socket.addEventListener("message", (message) => {
      let frame;
      try {
        frame = JSON.parse(message.data);
      } catch {
        return;
      }
      if (frame.type === "ready") {
        // The server waits only briefly for `resume`, so it goes before anything else.
        socket.send(JSON.stringify({ type: "resume", cursors: this.cursors() }));
        this.failures = 0;
        this.setState("live");
      }
      if (frame.type === "error" && frame.code === "unauthenticated") sessionEnded = true;
      this.onFrame(frame);
    });
    socket.addEventListener("close", () => {
      if (this.socket === socket) this.socket = null;
      if (this.stopped || socket.intentional) return;
      // The server ended this socket's session. A password change does that too while giving this
      // page a new cookie, so ask again at once: the API hook signs the page out if it is over.
      if (sessionEnded) return this.connect();
      this.scheduleRetry();
    });
    socket.addEventListener("error", () => {
      // "close" follows and decides what to do.
    });
  }

  scheduleRetry() {
    if (this.stopped) return;
    if (!navigator.onLine) return this.setState("offline");
    const ceiling = Math.min(BACKOFF_MS_MAX, BACKOFF_MS_FIRST * 2 ** this.failures);
    const delay = Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
    this.failures += 1;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay);
    this.setState("reconnecting", Date.now() + delay);
  }

  /** Tells the channel's members this user is typing (at most every few seconds per channel). */
  sendTyping(channelId) {
    const now = Date.now();
    if (!this.socket || this.state !== "live" || now - (this.lastTyping.get(channelId) || 0) < TYPING_SEND_MS_MIN) return;
    this.lastTyping.set(channelId, now);
    this.socket.send(JSON.stringify({ type: "typing", channel_id: channelId }));
  }
}
