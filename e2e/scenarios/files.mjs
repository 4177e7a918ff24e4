// Files in the chat: Fiona attaches a text file with the attach button and drops a PNG onto the
// conversation, sees each upload finish, and sends them with a message; Gus, on a phone, sees the
// files arrive live as download links and downloads both. An HTML file is refused with the
// server's own sentence; hostile file names (markup, a bidi override) show as inert text.

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { deflateSync } from "node:zlib";

import { PHONE, checkLabels, checkNoViolations, newContext, signIn } from "../lib/browser.mjs";
import { assert, assertEqual, eventually } from "../lib/check.mjs";

const NOTES = "Agenda for Thursday\n1. Budget\n2. Hiring\n";
const MARKUP_NAME = "<img src=x onerror=alert(1)>.txt";
const BIDI_NAME = "invoice\u202Etxt.exe.txt"; // shows as "invoiceexe.txt.txt" if the override works
const BIDI_STORED = "invoicetxt.exe.txt";

export default async function files({ browser, api, owner, shots, base }) {
  const fiona = await api.enroll(await api.invite(owner.token), "fiona", "Fiona Byrne");
  const gus = await api.enroll(await api.invite(owner.token), "gus", "Gus Lindqvist");
  const channel = await api.must("POST", "/api/v1/channels", { token: fiona.token, data: { name: "design-files", kind: "public", topic: "Drafts and exports" } });
  await api.must("POST", `/api/v1/channels/${channel.id}/join`, { token: gus.token });

  const fionaContext = await newContext(browser, base, { label: "fiona" });
  const gusContext = await newContext(browser, base, { label: "gus", viewport: PHONE, isMobile: true });
  const f = await fionaContext.newPage();
  const g = await gusContext.newPage();
  await signIn(f, fiona.username);
  await signIn(g, gus.username);
  await f.locator("#channel-list a", { hasText: "design-files" }).click();
  await f.locator("#conv-title", { hasText: "design-files" }).waitFor();
  await g.locator("#main .view-header .nav-toggle").click();
  await g.locator("#channel-list a", { hasText: "design-files" }).click();
  await g.locator("#conv-title", { hasText: "design-files" }).waitFor();

  // The attach button: labelled, reachable with Tab from the message field (Shift+Tab).
  await f.locator("#composer").focus();
  await f.keyboard.press("Shift+Tab");
  assert(await f.evaluate(() => document.activeElement?.getAttribute("aria-label") === "Attach files"), "Shift+Tab from the field reaches the attach button");
  // The button opens the hidden picker; the files are given to the picker itself (waiting for the
  // native chooser races with the click that opens it).
  await f.setInputFiles("#composer-attach ~ input[type=file]", { name: "notes.txt", mimeType: "text/plain", buffer: Buffer.from(NOTES) });
  await f.locator(".attachment.ready", { hasText: "notes.txt" }).waitFor();

  // A PNG dropped onto the conversation: the drop hint shows while dragging.
  const picture = png(48, 32);
  await dragFile(f, ".conv-main", "chart.png", "image/png", picture, ["dragenter", "dragover"]);
  assert(await f.locator(".conv-main.dropping").isVisible(), "dragging files over the conversation shows the drop hint");
  await dragFile(f, ".conv-main", "chart.png", "image/png", picture, ["drop"]);
  assertEqual(await f.locator(".conv-main.dropping").count(), 0, "the drop hint goes away on drop");
  await f.locator(".attachment.ready", { hasText: "chart.png" }).waitFor();
  assert(await f.locator(".attachment.ready", { hasText: "image/png" }).isVisible(), "the attachment shows its type");

  // Sent with the next message; the tray empties; Gus sees it live with both links.
  await f.locator("#composer").fill("Notes and the chart for Thursday");
  await f.locator("#composer").press("Enter");
  await f.locator("#message-list .msg:not(.pending)", { hasText: "Notes and the chart for Thursday" }).locator(".file-link").nth(1).waitFor();
  assertEqual(await f.locator(".attachment").count(), 0, "the sent attachments leave the composer");
  const sent = g.locator("#message-list .msg", { hasText: "Notes and the chart for Thursday" });
  await sent.locator(".file-link", { hasText: "chart.png" }).waitFor();
  const notesLink = sent.locator(".file-link", { hasText: "notes.txt" });
  assertEqual(await notesLink.locator(".file-name").textContent(), "notes.txt", "the name is the link's text");
  assert((await notesLink.locator(".file-meta").textContent()).includes(`${NOTES.length} B · text/plain`), "size and type are shown");
  const href = await notesLink.getAttribute("href");
  assert(/^\/api\/v1\/files\/[A-Za-z0-9_-]+$/.test(href), `the link points at the file (${href})`);
  assertEqual(await notesLink.getAttribute("download"), "notes.txt", "the link downloads");
  assert(await checkLabels(g, "gus files"), "every control has a name on the phone");

  // Gus downloads both: the text byte for byte; the picture re-encoded (metadata stripped), a PNG.
  assertEqual((await download(g, notesLink)).toString("utf8"), NOTES, "the downloaded text file");
  const chartBytes = await download(g, sent.locator(".file-link", { hasText: "chart.png" }));
  assertEqual(chartBytes.subarray(0, 8).toString("hex"), "89504e470d0a1a0a", "the downloaded picture is a PNG");
  await g.screenshot({ path: join(shots, "files-phone.png") });

  // An HTML file is refused: the server's own sentence is shown on that file; it can be removed.
  const page = '<!DOCTYPE html><html><body><script>alert("x")</script></body></html>';
  const expected = await f.evaluate(async ({ id, body }) => {
    const form = new FormData();
    form.append("file", new File([body], "page.html", { type: "text/html" }));
    const response = await fetch(`/api/v1/channels/${encodeURIComponent(id)}/files`, { method: "POST", body: form });
    return { status: response.status, body: await response.json() };
  }, { id: channel.id, body: page });
  assertEqual(expected.status, 415, "the API refuses HTML");
  await f.setInputFiles("#composer-attach ~ input[type=file]", { name: "page.html", mimeType: "text/html", buffer: Buffer.from(page) });
  const refused = f.locator(".attachment.failed", { hasText: "page.html" });
  await refused.waitFor();
  assertEqual(await refused.locator(".attachment-status").textContent(), expected.body.error.message, "the refusal shows the server's message");
  assertEqual(await refused.locator(".attachment-status").getAttribute("role"), "alert", "the refusal is announced");

  // Hostile names: attached, sent, and shown to both as plain text (no element, no dialog).
  await f.setInputFiles("#composer-attach ~ input[type=file]", [
    { name: MARKUP_NAME, mimeType: "text/plain", buffer: Buffer.from("markup in the name\n") },
    { name: BIDI_NAME, mimeType: "text/plain", buffer: Buffer.from("bidi in the name\n") },
  ]);
  await f.locator(".attachment.ready").nth(1).waitFor();
  await f.screenshot({ path: join(shots, "files.png") });
  await f.getByRole("button", { name: "Remove page.html" }).click();
  assertEqual(await f.locator(".attachment.failed").count(), 0, "a refused file can be removed");
  await f.locator("#composer").press("Enter"); // files alone: the message gets a short text
  await f.locator("#message-list .msg:not(.pending)", { hasText: "Shared 2 files" }).waitFor();
  const history = await api.must("GET", `/api/v1/channels/${channel.id}/messages?limit=10`, { token: gus.token });
  const stored = history.messages.find((m) => m.body === "Shared 2 files").files.map((file) => file.name).sort();
  assertEqual(stored[1], BIDI_STORED, "the server strips the bidi override from the name");
  for (const p of [f, g]) {
    const message = p.locator("#message-list .msg:not(.pending)", { hasText: "Shared 2 files" });
    await message.locator(".file-link").nth(1).waitFor();
    const names = await message.locator(".file-link .file-name").allTextContents();
    assertEqual(JSON.stringify(names.sort()), JSON.stringify(stored), "the names show as the server stored them, as text");
    assertEqual(await p.locator("#message-list .file-list img, #message-list .file-list script").count(), 0, "no element comes from a file name");
  }
  const hostile = g.locator("#message-list .msg", { hasText: "Shared 2 files" }).locator(".file-link", { hasText: "onerror" });
  assertEqual((await download(g, hostile)).toString("utf8"), "markup in the name\n", "the hostile-named file downloads");

  // The server sanitizes names; the client must not rely on it. Gus reloads with the history
  // answer carrying the raw hostile names: markup stays text, the bidi override is not shown.
  await g.route("**/api/v1/channels/*/messages?*", async (route) => {
    const response = await route.fetch();
    const page = await response.json();
    for (const message of page.messages) {
      if (message.body !== "Shared 2 files") continue;
      message.files[0].name = MARKUP_NAME;
      message.files[1].name = BIDI_NAME;
    }
    await route.fulfill({ response, json: page });
  });
  await g.reload();
  const raw = g.locator("#message-list .msg", { hasText: "Shared 2 files" });
  await raw.locator(".file-link").nth(1).waitFor();
  const rawNames = await raw.locator(".file-link .file-name").allTextContents();
  assertEqual(JSON.stringify(rawNames), JSON.stringify([MARKUP_NAME, BIDI_STORED]), "raw hostile names render as inert text");
  assertEqual(await raw.locator(".file-link").first().getAttribute("download"), MARKUP_NAME, "the download attribute holds the name as a plain value");
  assertEqual(await g.locator("#message-list .file-list img").count(), 0, "no element comes from a raw file name");
  await g.unroute("**/api/v1/channels/*/messages?*");

  await f.mouse.move(640, 400);
  await f.waitForTimeout(200);
  await f.screenshot({ path: join(shots, "files-sent.png") });
  for (const [p, label] of [[f, "fiona"], [g, "gus"]]) assert(await checkNoViolations(p, label), `${label}: no CSP violation`);
  await fionaContext.close();
  await gusContext.close();
}

/** Clicks a download link and returns the downloaded bytes. */
async function download(page, link) {
  const [event] = await Promise.all([page.waitForEvent("download"), link.click()]);
  const path = await event.path();
  assert(path, `the download of ${event.suggestedFilename()} finished`);
  return readFile(path);
}

/** Dispatches drag events carrying one file (a DataTransfer made in the page) at `selector`. */
async function dragFile(page, selector, name, type, bytes, events) {
  await page.evaluate(
    ({ selector, name, type, base64, events }) => {
      const data = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
      const transfer = new DataTransfer();
      transfer.items.add(new File([data], name, { type }));
      const target = document.querySelector(selector);
      for (const kind of events) target.dispatchEvent(new DragEvent(kind, { bubbles: true, cancelable: true, dataTransfer: transfer }));
    },
    { selector, name, type, base64: bytes.toString("base64"), events },
  );
}

/** A small RGB PNG: a diagonal gradient. */
function png(width, height) {
  const rows = [];
  for (let y = 0; y < height; y += 1) {
    const row = Buffer.alloc(1 + width * 3);
    for (let x = 0; x < width; x += 1) row.set([(x * 255) / width, (y * 255) / height, 160], 1 + x * 3);
    rows.push(row);
  }
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 2, 0, 0, 0], 8);
  const chunk = (kind, data) => {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(kind, "ascii"), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([length, body, crc]);
  };
  return Buffer.concat([
    Buffer.from("89504e470d0a1a0a", "hex"),
    chunk("IHDR", header),
    chunk("IDAT", deflateSync(Buffer.concat(rows))),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

function crc32(bytes) {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let bit = 0; bit < 8; bit += 1) crc = (crc >>> 1) ^ (0xedb88320 & -(crc & 1));
  }
  return (crc ^ 0xffffffff) >>> 0;
}
