// Hostile content renders as inert text: the corpus (corpus.mjs) goes into messages (live, from
// history, in threads, as edits), display names (message headers, direct messages, user search,
// the admin console), channel topics (headers, browse) and channel names (refused by the server).
// Nothing may execute, no dialog may open, no element may come from it, no CSP violation occurs.

import { join } from "node:path";

import { checkNoViolations, newContext, signIn } from "../lib/browser.mjs";
import { assert, assertEqual, eventually } from "../lib/check.mjs";
import { CHANNEL_NAMES, DISPLAY_NAMES, MESSAGES, REFUSED_DISPLAY_NAMES, SIZE, TOPICS } from "../corpus.mjs";

const nfc = (text) => text.normalize("NFC");

export default async function xss({ browser, api, owner, shots, base }) {
  const victor = await api.enroll(await api.invite(owner.token), "victor", "Victor Reyes");
  const mallory = await api.enroll(await api.invite(owner.token), "mallory", "Mallory");
  const as = (user) => ({ token: user.token });

  // Channels: the lab (its topic hostile too) and one per hostile topic; Victor joins them all.
  const lab = await api.must("POST", "/api/v1/channels", { ...as(mallory), data: { name: "xss-lab", kind: "public", topic: TOPICS[0] } });
  const topicChannels = [lab];
  for (const [i, topic] of TOPICS.slice(1).entries()) {
    topicChannels.push(await api.must("POST", "/api/v1/channels", { ...as(mallory), data: { name: `xss-topic-${i + 1}`, kind: "public", topic } }));
  }
  for (const channel of topicChannels) await api.must("POST", `/api/v1/channels/${channel.id}/join`, as(victor));
  for (const name of CHANNEL_NAMES) {
    const refused = await api.call("POST", "/api/v1/channels", { ...as(mallory), data: { name, kind: "public" } });
    assertEqual(refused.status, 400, `the channel name ${JSON.stringify(name)} is refused`);
  }
  for (const [i, name] of REFUSED_DISPLAY_NAMES.entries()) {
    const refused = await api.call("POST", "/api/v1/auth/enroll", { data: { token: await api.invite(owner.token), username: `spoof${i}`, display_name: name, password: "correct horse battery staple" } });
    assertEqual(refused.status, 400, `the display name ${JSON.stringify(name)} is refused`);
  }

  // People with hostile display names: each writes in the lab and opens a DM with Victor.
  const named = [];
  for (const [i, name] of DISPLAY_NAMES.entries()) {
    const user = await api.enroll(await api.invite(owner.token), `name${i}`, name);
    await api.must("POST", `/api/v1/channels/${lab.id}/join`, as(user));
    await api.must("POST", `/api/v1/channels/${lab.id}/messages`, { ...as(user), data: { body: `hello from name${i}` } });
    const dm = await api.must("POST", "/api/v1/dms", { ...as(user), data: { user_id: victor.id } });
    await api.must("POST", `/api/v1/channels/${dm.id}/messages`, { ...as(user), data: { body: `dm from name${i}` } });
    named.push(user);
  }

  const context = await newContext(browser, base, { label: "victor" });
  const page = await context.newPage();
  await signIn(page, victor.username);
  await page.locator("#channel-list a", { hasText: "xss-lab" }).click();
  await page.locator("#message-list .msg-body", { hasText: "hello from name5" }).waitFor();

  // Live: Mallory posts the corpus while Victor watches; one is edited into a payload; a thread.
  const sent = [];
  for (const body of MESSAGES) sent.push(await api.must("POST", `/api/v1/channels/${lab.id}/messages`, { ...as(mallory), data: { body } }));
  const decoy = await api.must("POST", `/api/v1/channels/${lab.id}/messages`, { ...as(mallory), data: { body: "an innocent message" } });
  await api.must("PATCH", `/api/v1/messages/${decoy.id}`, { ...as(mallory), data: { body: MESSAGES[1] } });
  for (const body of MESSAGES.slice(0, 5)) {
    await api.must("POST", `/api/v1/channels/${lab.id}/messages`, { ...as(mallory), data: { body, thread_id: sent[0].id } });
  }
  const expected = [...DISPLAY_NAMES.map((_, i) => `hello from name${i}`), ...MESSAGES, MESSAGES[1]].map(nfc);
  await eventually(async () => (await bodies(page)).length === expected.length, `all ${expected.length} messages shown live`, 15_000);
  await checkPage(page, "victor live", { messages: expected });

  // From history, after a reload.
  await page.reload();
  await page.locator("#channel-list a", { hasText: "xss-lab" }).click();
  // A history page holds the newest 50 messages (thread replies included); earlier ones load on demand.
  await eventually(
    async () => {
      if (await page.locator("#load-earlier").isVisible()) await page.locator("#load-earlier").click();
      return (await bodies(page)).length === expected.length;
    },
    "history shows the whole corpus",
    15_000,
  );
  await checkPage(page, "victor history", { messages: expected });
  const spoof = page.locator("#message-list .msg-body", { hasText: "txt.exe" }).first();
  assert((await spoof.locator(".bidi-ctl").count()) === 1, "a right-to-left override is shown and contained");

  // The thread pane.
  await page.locator(`#m-${sent[0].id} .replies`).click();
  await eventually(async () => (await page.locator("#thread-replies .msg-body").count()) === 5, "the thread's five replies");
  await checkPage(page, "victor thread", { thread: MESSAGES.slice(0, 5).map(nfc) });
  // caret "initial": hiding the caret, Playwright writes an inline style on every field it finds
  // (the sidebar's search box outlives this view), which checkPage would then report.
  await page.screenshot({ path: join(shots, "xss-corpus.png"), caret: "initial" });
  await page.getByRole("button", { name: "Close thread" }).click();

  // Display names in the sidebar, a DM header, user search; topics in headers and browse.
  await eventually(async () => (await page.locator("#dm-list a").count()) === DISPLAY_NAMES.length, "every DM in the sidebar");
  const dmNames = await page.locator("#dm-list .nav-name").allTextContents();
  for (const name of DISPLAY_NAMES) assert(dmNames.includes(name.trim()), `the DM list shows ${JSON.stringify(name)} as text`);
  await page.locator("#dm-list a").first().click();
  await page.locator("#message-list .msg-body", { hasText: /dm from name/ }).waitFor();
  await checkPage(page, "victor dm");
  await page.getByRole("button", { name: "New direct message" }).click();
  await page.getByLabel("Find a colleague").fill("name");
  await eventually(async () => (await page.locator("#dm-results .pick").count()) === DISPLAY_NAMES.length, "search finds every hostile name");
  await checkPage(page, "victor search");
  await page.getByRole("dialog").getByRole("button", { name: "Close" }).click();
  for (const [i, channel] of topicChannels.entries()) {
    await page.locator(`#channel-list a[data-channel-id="${channel.id}"]`).click();
    await eventually(async () => (await page.locator("#conv-topic").textContent()) === TOPICS[i], `topic ${i} shown as text`);
    await checkPage(page, `victor topic ${i}`);
  }
  await page.getByRole("button", { name: "Browse channels" }).click();
  await eventually(async () => (await page.locator("#browse-list .pick-sub").count()) >= TOPICS.length, "browse lists the topics");
  await checkPage(page, "victor browse");
  await page.getByRole("dialog").getByRole("button", { name: "Close" }).click();

  // The admin console: names in the users table, and the audit log (enrollments name them).
  const ownerContext = await newContext(browser, base, { label: "owner-xss" });
  const o = await ownerContext.newPage();
  await signIn(o, owner.username);
  await o.goto("/#/admin/users");
  await eventually(async () => (await o.locator("#users-body tr").count()) >= DISPLAY_NAMES.length, "the users table");
  const tableNames = await o.locator("#users-body .strong").allTextContents();
  for (const name of DISPLAY_NAMES) assert(tableNames.includes(name.trim()), `the users table shows ${JSON.stringify(name)} as text`);
  await checkPage(o, "owner users");
  await o.getByRole("tab", { name: "Audit log" }).click();
  await o.locator("#audit-body tr").first().waitFor();
  await checkPage(o, "owner audit");

  assert(await checkNoViolations(page, "victor"), "victor: no CSP violation");
  assert(await checkNoViolations(o, "owner"), "owner: no CSP violation");
  console.log(`     xss corpus: ${SIZE} payloads (${MESSAGES.length} messages, ${DISPLAY_NAMES.length + REFUSED_DISPLAY_NAMES.length} display names, ${TOPICS.length} topics, ${CHANNEL_NAMES.length} channel names)`);
  await context.close();
  await ownerContext.close();
}

async function bodies(page, scope = "#message-list") {
  return page.locator(`${scope} .msg-body`).evaluateAll((els) => els.map((el) => el.textContent));
}

/** The page holds nothing made from hostile text; message texts are exactly the ones sent. */
async function checkPage(page, label, { messages = null, thread = null } = {}) {
  const problems = await page.evaluate(() => {
    const found = [];
    if (window.__xss !== undefined) found.push(`a payload ran: window.__xss = ${window.__xss}`);
    const scripts = [...document.scripts].map((s) => s.getAttribute("src"));
    if (scripts.length !== 1 || scripts[0] !== "/assets/app.js") found.push(`unexpected scripts: ${JSON.stringify(scripts)}`);
    for (const el of document.querySelectorAll("iframe, frame, object, embed, base, style, body meta, video, audio, source, math, details, noscript, marquee, x")) {
      if (el.matches("body > noscript")) continue; // the page's own notice
      found.push(`a <${el.tagName.toLowerCase()}> element is in the page`);
    }
    for (const el of document.querySelectorAll("*")) {
      for (const attr of el.attributes) {
        if (/^on/i.test(attr.name)) found.push(`<${el.tagName.toLowerCase()}> has ${attr.name}`);
        if (/^(href|src|action|formaction|xlink:href|data|srcdoc|background|poster)$/i.test(attr.name) && /^\s*(javascript|vbscript|data):/i.test(attr.value)) {
          found.push(`<${el.tagName.toLowerCase()} ${attr.name}="${attr.value}">`);
        }
      }
      if (el.hasAttribute("style")) found.push(`<${el.tagName.toLowerCase()}> has a style attribute`);
    }
    // Inside user text, only our own link and direction-control elements may exist.
    for (const holder of document.querySelectorAll(".msg-body, bdi")) {
      for (const el of holder.querySelectorAll("*")) {
        const ok =
          (el.matches("a.link") && /^https?:\/\//.test(el.getAttribute("href")) && el.rel === "noopener noreferrer nofollow") ||
          el.matches("span.bidi-ctl") ||
          (el.matches("em") && el.parentElement === holder && !holder.closest(".msg:not(.deleted)")) ||
          el.matches(".edit-field, .edit-actions, .edit-actions *, .form-status");
        if (!ok) found.push(`user text holds <${el.tagName.toLowerCase()} class="${el.className}">`);
      }
    }
    return found;
  });
  for (const problem of problems) throw new Error(`${label}: ${problem}`);
  if (messages) assertSameTexts(await bodies(page), messages, `${label}: message texts`);
  if (thread) assertSameTexts(await bodies(page, "#thread-replies"), thread, `${label}: thread texts`);
}

function assertSameTexts(actual, expected, label) {
  const sort = (list) => [...list].sort();
  const a = sort(actual);
  const e = sort(expected);
  for (let i = 0; i < Math.max(a.length, e.length); i += 1) {
    if (a[i] !== e[i]) throw new Error(`${label}: expected ${JSON.stringify(e[i])}, shown ${JSON.stringify(a[i])}`);
  }
}
