// Files in the chat: uploading one (XMLHttpRequest, for its upload progress), the tray of
// attachments waiting in a composer (progress, the server's refusal, remove), and the download
// links a message's files are shown as. File names come from other people: they are only ever
// text (textContent, isolated with <bdi>), and ids reach a URL through encodeURIComponent.

import { h, icon } from "./dom.js";

/** As many files as one message may carry (core::limits::MESSAGE_FILES_MAX). */
export const MESSAGE_FILES_MAX = 10;
/** Uploads sent at once; the others wait their turn (the server takes 3 per person at once). */
const UPLOADS_AT_ONCE = 3;

/** A size for people: "812 B", "14.2 KB", "3.1 MB". */
export function formatSize(bytes) {
  const n = Number(bytes) || 0;
  if (n < 1000) return `${n} B`;
  const units = ["KB", "MB", "GB", "TB"];
  let value = n / 1000;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${value >= 100 ? Math.round(value) : value.toFixed(1)} ${units[unit]}`;
}

/** The type without its parameters: "text/plain; charset=utf-8" → "text/plain". */
export function shortType(contentType) {
  return String(contentType || "").split(";")[0].trim() || "file";
}

// Control and bidirectional-formatting characters: the server strips them from stored names; a
// name picked on this machine is shown without them too, so it cannot reorder what it shows.
const UNSHOWN = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/** A file name as shown: text only, without the characters above. */
export function shownName(name) {
  return String(name ?? "").replace(UNSHOWN, "");
}

/** Where a file is downloaded. */
export function fileHref(id) {
  return `/api/v1/files/${encodeURIComponent(String(id))}`;
}

/** The files a message carries, as download links (name as text, then size and type). */
export function fileList(files) {
  if (!Array.isArray(files) || !files.length) return null;
  return h(
    "ul",
    { class: "file-list", "aria-label": "Files" },
    files.map((file) => {
      const name = file.name ?? null;
      const meta = `${formatSize(file.size)} · ${shortType(file.content_type)}`;
      if (name === null) {
        // The name's seal failed its integrity check: say so rather than offer an unnamed file.
        return h("li", { class: "file-item" }, h("span", { class: "file-chip unavailable" }, icon("alert"), h("span", { class: "file-name", text: "File name unavailable" })));
      }
      return h(
        "li",
        { class: "file-item" },
        h(
          "a",
          { class: "file-chip file-link", href: fileHref(file.id), download: shownName(name) || true, title: `Download ${shownName(name)} (${meta})` },
          icon("file"),
          h("bdi", { class: "file-name", text: shownName(name) }),
          h("span", { class: "file-meta", text: meta }),
        ),
      );
    }),
  );
}

/**
 * Uploads `file` to a channel. `onProgress(fraction)` while it is sent. Resolves with the stored
 * file; rejects with an Error carrying the server's sentence (413, 415, 422, 503…). Returns
 * {done, abort}. Cookie authentication: a same-origin POST carries the Origin header the server's
 * CSRF check asks for.
 */
export function uploadFile(channelId, file, onProgress) {
  const xhr = new XMLHttpRequest();
  const done = new Promise((resolve, reject) => {
    xhr.open("POST", `/api/v1/channels/${encodeURIComponent(String(channelId))}/files`);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.responseType = "text";
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable && event.total > 0) onProgress(event.loaded / event.total);
    });
    xhr.addEventListener("load", () => {
      let data = null;
      try {
        data = JSON.parse(xhr.responseText);
      } catch {
        data = null;
      }
      if (xhr.status === 201 && data && data.id) return resolve(data);
      const failure = new Error(data?.error?.message || `The server answered ${xhr.status}.`);
      failure.code = data?.error?.code || `http_${xhr.status}`;
      failure.status = xhr.status;
      reject(failure);
    });
    xhr.addEventListener("error", () => {
      // A server that refuses a body mid-stream (too large) may close the connection first.
      reject(new Error("The upload was cut off: the file may be too large, or the connection dropped."));
    });
    xhr.addEventListener("abort", () => reject(Object.assign(new Error("Upload cancelled."), { code: "aborted" })));
    const form = new FormData();
    form.append("file", file, file.name);
    xhr.send(form);
  });
  return { done, abort: () => xhr.abort() };
}

/**
 * The attachments waiting in one composer. `channelId` is where they are uploaded;
 * `onChange()` after any change. Each item: {file, state: "uploading"|"ready"|"failed", stored, el}.
 */
export function makeAttachmentTray(channelId, { onChange = () => {} } = {}) {
  const items = [];
  const el = h("ul", { class: "attachments", "aria-label": "Attachments", hidden: true });

  function render() {
    el.hidden = items.length === 0;
    onChange();
  }

  function remove(item) {
    const at = items.indexOf(item);
    if (at < 0) return;
    items.splice(at, 1);
    item.upload?.abort();
    item.el.remove();
    render();
  }

  function build(item) {
    const shown = shownName(item.file.name);
    const name = h("bdi", { class: "file-name", text: shown });
    const meta = h("span", { class: "file-meta", text: formatSize(item.file.size) });
    const bar = h("progress", { class: "upload-bar", max: 100, value: 0, "aria-label": `Uploading ${shown}` });
    const status = h("p", { class: "attachment-status", role: "status" });
    const removeButton = h("button", { type: "button", class: "icon-btn small", "aria-label": `Remove ${shown}`, title: "Remove", on: { click: () => remove(item) } }, icon("close"));
    item.el = h("li", { class: "attachment uploading" }, h("div", { class: "attachment-row" }, icon("file"), name, meta, removeButton), bar, status);
    item.bar = bar;
    item.status = status;
    item.meta = meta;
    item.name = name;
  }

  /** Starts waiting uploads while fewer than UPLOADS_AT_ONCE are being sent. */
  function pump() {
    while (items.filter((i) => i.upload).length < UPLOADS_AT_ONCE) {
      const next = items.find((i) => i.state === "uploading" && !i.started);
      if (!next) return;
      start(next);
    }
  }

  function start(item) {
    item.started = true;
    item.upload = uploadFile(channelId, item.file, (fraction) => {
      item.bar.value = Math.round(fraction * 100);
    });
    item.upload.done.then(
      (stored) => {
        item.state = "ready";
        item.stored = stored;
        item.upload = null;
        item.bar.remove();
        item.el.className = "attachment ready";
        // The server's copy of the name (sanitized) is what the others will see.
        if (stored.name) item.name.textContent = shownName(stored.name);
        item.meta.textContent = `${formatSize(stored.size)} · ${shortType(stored.content_type)}`;
        item.status.textContent = "Ready to send";
        render();
        pump();
      },
      (failure) => {
        if (failure.code === "aborted") return;
        item.state = "failed";
        item.upload = null;
        item.bar.remove();
        item.el.className = "attachment failed";
        item.status.setAttribute("role", "alert");
        item.status.textContent = failure.message;
        render();
        pump();
      },
    );
  }

  return {
    el,
    /** Adds and starts uploading files; returns a sentence if some were left out (the limit). */
    add(files) {
      let refused = 0;
      for (const file of files) {
        if (items.filter((i) => i.state !== "failed").length >= MESSAGE_FILES_MAX) {
          refused += 1;
          continue;
        }
        const item = { file, state: "uploading", stored: null };
        build(item);
        items.push(item);
        el.append(item.el);
      }
      pump();
      render();
      return refused ? `A message can carry at most ${MESSAGE_FILES_MAX} files.` : null;
    },
    uploading: () => items.some((i) => i.state === "uploading"),
    /** Stops every upload still running (the view is going away). */
    abortAll: () => items.forEach((i) => i.upload?.abort()),
    readyCount: () => items.filter((i) => i.state === "ready").length,
    /** Takes the uploaded files out of the tray (and drops refused ones: their message was seen). */
    take() {
      const taken = items.filter((i) => i.state === "ready");
      for (const item of [...items]) if (item.state !== "uploading") remove(item);
      return taken;
    },
    /** Puts taken files back (the message was refused and its text is back in the field). */
    restore(taken) {
      for (const item of taken) {
        items.push(item);
        el.append(item.el);
      }
      render();
    },
  };
}

/**
 * Makes `target` accept files dragged onto it (shown with the `dropping` class), handing them to
 * `onFiles(fileList)`. Returns a function that stops it.
 */
export function acceptDrops(target, onFiles) {
  const carriesFiles = (event) => [...(event.dataTransfer?.types || [])].includes("Files");
  let depth = 0; // dragenter/dragleave also fire for every child crossed
  const over = (event) => {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
  };
  const enter = (event) => {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    depth += 1;
    target.classList.add("dropping");
  };
  const leave = (event) => {
    if (!carriesFiles(event)) return;
    depth = Math.max(0, depth - 1);
    if (!depth) target.classList.remove("dropping");
  };
  const drop = (event) => {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    depth = 0;
    target.classList.remove("dropping");
    if (event.dataTransfer.files.length) onFiles(event.dataTransfer.files);
  };
  // A file dropped just beside the target must not make the browser navigate away to open it.
  const guard = (event) => carriesFiles(event) && event.preventDefault();
  const listeners = [
    [target, "dragover", over],
    [target, "dragenter", enter],
    [target, "dragleave", leave],
    [target, "drop", drop],
    [window, "dragover", guard],
    [window, "drop", guard],
  ];
  for (const [node, type, fn] of listeners) node.addEventListener(type, fn);
  return () => {
    for (const [node, type, fn] of listeners) node.removeEventListener(type, fn);
  };
}
