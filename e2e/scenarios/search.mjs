// Message search: Sofia writes in English, in Chinese and a hostile payload holding a search
// word; searches show exactly the expected messages newest first, the payload as inert text and
// the matched words in <mark>; a refused query shows the server's sentence, no match says so,
// "load more" pages on. Opening a result far back loads history around it and highlights it (also
// a thread reply). Tomás, outside a private channel, never sees its messages; on a phone too.

import { join } from "node:path";

import { PHONE, checkLabels, checkNoViolations, newContext, signIn } from "../lib/browser.mjs";
import { assert, assertEqual, eventually, seeOnce } from "../lib/check.mjs";

const PAYLOAD = "<img src=x onerror=alert(1)> zebra";
const ENGLISH = "The zebra crossing survey is finished, results are in the shared folder.";
const CHINESE = "我们明天讨论搜索功能的设计";
const PRIVATE = "Private zebra budget: please do not share outside this channel.";
const REPLY = "Replying about the zebra stripes in the survey.";
const LIVE = "A live note while Sofia reads far back";
// Enough messages after the first one that it is not in the latest page the client loads (50),
// and more matches of "giraffe" than one page of results (20).
const FILLERS = 64;

export default async function search({ browser, api, owner, shots, base }) {
  const sofia = await api.enroll(await api.invite(owner.token), "sofia", "Sofia Lindqvist");
  const tomas = await api.enroll(await api.invite(owner.token), "tomas", "Tomás Ruiz");
  const as = (user) => ({ token: user.token });
  const research = await api.must("POST", "/api/v1/channels", { ...as(sofia), data: { name: "research", kind: "public" } });
  const secret = await api.must("POST", "/api/v1/channels", { ...as(sofia), data: { name: "secret-plans", kind: "private" } });
  await api.must("POST", `/api/v1/channels/${research.id}/join`, as(tomas));

  // Sofia writes in the browser; Tomás's many messages push her first one far back.
  const context = await newContext(browser, base, { label: "sofia" });
  const page = await context.newPage();
  await signIn(page, sofia.username);
  await page.locator("#channel-list a", { hasText: "research" }).click();
  const englishId = await send(page, ENGLISH);
  await api.must("POST", `/api/v1/channels/${research.id}/messages`, { ...as(sofia), data: { body: REPLY, thread_id: englishId } });
  for (let i = 1; i <= FILLERS; i += 1) {
    await api.must("POST", `/api/v1/channels/${research.id}/messages`, { ...as(tomas), data: { body: `Giraffe count ${i} of ${FILLERS}` } });
  }
  await seeOnce(page, `Giraffe count ${FILLERS} of ${FILLERS}`);
  await send(page, CHINESE);
  const payloadId = await send(page, PAYLOAD);
  await page.locator("#channel-list a", { hasText: "secret-plans" }).click();
  const privateId = await send(page, PRIVATE);

  // A fresh page: only the latest 50 messages of a channel are loaded.
  await page.reload();
  await page.locator("#channel-list a", { hasText: "research" }).click();
  await seeOnce(page, PAYLOAD);
  assertEqual(await page.locator(`#m-${englishId}`).count(), 0, "the first message is not loaded yet");
  await eventually(async () => (await page.locator("#channel-list .badge").count()) === 0, "reading the channel clears its unread count");

  // "/" focuses the search box; every match, newest first, the payload inert, words marked.
  await page.locator("#messages").focus();
  await page.keyboard.press("/");
  assert(await page.evaluate(() => document.activeElement?.id === "search-input"), "/ focuses the search box");
  await page.keyboard.type("zebra");
  await page.keyboard.press("Enter");
  await expectResults(page, [PRIVATE, PAYLOAD, REPLY, ENGLISH]);
  assertEqual(await page.locator("#search-results .hit-channel").first().textContent(), "secret-plans", "a result names its channel");
  assertEqual(await page.locator("#search-results .hit-sender").first().textContent(), "Sofia Lindqvist", "a result names its sender");
  const payloadHit = page.locator(`#search-results .search-hit[data-message-id="${payloadId}"]`);
  assertEqual(await payloadHit.locator(".hit-body").textContent(), PAYLOAD, "the payload is shown as text");
  assertEqual(await payloadHit.locator(".hit-body > *").count(), 1, "the only element in the payload's text is the mark");
  assertEqual(await payloadHit.locator(".hit-body mark").textContent(), "zebra", "the matched word is marked");
  assertEqual(await page.locator("#search-results img").count(), 0, "no image element came from the payload");
  assert(await page.evaluate(() => window.__xss === undefined), "no payload ran");
  assert(await checkLabels(page, "sofia search"), "every control of the search has a name");
  await page.mouse.move(900, 700);
  await page.screenshot({ path: join(shots, "search.png") });
  await page.emulateMedia({ colorScheme: "dark" });
  await page.screenshot({ path: join(shots, "search-dark.png") });
  await page.emulateMedia({ colorScheme: "light" });

  // Chinese, a phrase, a prefix, filters; the server's sentence for a refused query; no match.
  await searchFor(page, "搜索功能");
  await expectResults(page, [CHINESE]);
  assertEqual(await page.locator("#search-results mark").textContent(), "搜索功能", "the Chinese words are marked");
  await searchFor(page, '"crossing survey" zeb*');
  await expectResults(page, [ENGLISH]);
  assertEqual((await page.locator("#search-results mark").allTextContents()).join("|"), "zebra|crossing survey", "the phrase and the prefix's word are marked");
  await searchFor(page, "zebra in:#research from:@sofia");
  await expectResults(page, [PAYLOAD, REPLY, ENGLISH]);
  await searchFor(page, "ze*");
  await page.locator("#search-error", { hasText: "A prefix search needs at least 3 letters" }).waitFor();
  assertEqual(await page.locator("#search-results .search-hit").count(), 0, "a refused query lists nothing");
  await searchFor(page, "okapi");
  await page.locator("#search-results", { hasText: "No messages match" }).waitFor();

  // More matches than a page: "load more" continues, newest first, without repeats.
  await searchFor(page, "giraffe");
  await eventually(async () => (await page.locator("#search-results .search-hit").count()) === 20, "the first page of results");
  await page.locator("#search-more").click();
  await eventually(async () => (await page.locator("#search-results .search-hit").count()) === 40, "the second page of results");
  const counts = (await page.locator("#search-results .hit-body").allTextContents()).map((text) => Number(/count (\d+)/.exec(text)[1]));
  assertEqual(counts.join(","), Array.from({ length: 40 }, (_, i) => FILLERS - i).join(","), "results newest first, once each");

  // Opening a result far back: the history around it is loaded, the message highlighted.
  await searchFor(page, "zebra");
  await expectResults(page, [PRIVATE, PAYLOAD, REPLY, ENGLISH]);
  await page.locator(`#search-results .search-hit[data-message-id="${englishId}"]`).click();
  await page.locator("#search-panel").waitFor({ state: "hidden" });
  const target = page.locator(`#message-list #m-${englishId}`);
  await target.and(page.locator(".target")).waitFor();
  await eventually(() => inView(page, `#m-${englishId}`), "the message is scrolled into view");
  assert(await page.evaluate((id) => document.activeElement?.id === `m-${id}`, englishId), "the message has focus");
  assertEqual(await page.locator("#conv-title").textContent(), "research", "the message's channel is open");
  await page.mouse.move(900, 790);
  await page.screenshot({ path: join(shots, "search-opened.png") });
  // Newer messages come on demand; one sent meanwhile waits for the present, shown once there.
  await api.must("POST", `/api/v1/channels/${research.id}/messages`, { ...as(tomas), data: { body: LIVE } });
  await page.waitForTimeout(300);
  assertEqual(await page.locator("#message-list .msg", { hasText: LIVE }).count(), 0, "a live message is not shown after a gap");
  assertEqual(await page.locator("#message-list .msg", { hasText: PAYLOAD }).count(), 0, "the window does not reach the present yet");
  // Another arrives while the page that reaches the present is on its way: shown once all the same.
  const RACE = "Sent while the newer page was on its way";
  await page.route(/\/messages\?.*after_seq=/, async (route) => {
    const response = await route.fetch();
    await api.must("POST", `/api/v1/channels/${research.id}/messages`, { ...as(tomas), data: { body: RACE } });
    await page.waitForTimeout(400);
    await route.fulfill({ response });
  }, { times: 1 });
  await page.locator("#load-newer").click();
  await seeOnce(page, `Giraffe count ${FILLERS} of ${FILLERS}`);
  await seeOnce(page, PAYLOAD);
  await seeOnce(page, LIVE);
  await seeOnce(page, RACE);
  await eventually(async () => (await page.locator("#load-newer").count()) === 0, "the window reaches the present");
  await eventually(async () => !(await page.locator(".jump").isVisible()), "no jump button at the present");

  // Keyboard only: Ctrl+K, type, Enter, ArrowDown to a result, Enter opens it.
  await page.keyboard.press("Control+k");
  await page.keyboard.type("zebra");
  await page.keyboard.press("Enter");
  await expectResults(page, [PRIVATE, PAYLOAD, REPLY, ENGLISH]);
  await page.keyboard.press("ArrowDown");
  await page.keyboard.press("Enter");
  await page.locator(`#message-list #m-${privateId}.target`).waitFor();
  assertEqual(await page.locator("#conv-title").textContent(), "secret-plans", "Enter opened the private channel");

  // A thread reply opens in its thread, highlighted there.
  await searchFor(page, "stripes");
  await expectResults(page, [REPLY]);
  await page.locator("#search-results .search-hit").click();
  await page.locator("#thread-replies .msg.target", { hasText: REPLY }).waitFor();
  await page.getByRole("button", { name: "Close thread" }).click();

  // Tomás is not in the private channel: its message is never among his results. On a phone.
  const tomasContext = await newContext(browser, base, { label: "tomas", viewport: PHONE, isMobile: true });
  const phone = await tomasContext.newPage();
  await signIn(phone, tomas.username);
  await phone.locator("#main .view-header .nav-toggle").click();
  await phone.locator("#channel-list a", { hasText: "research" }).click();
  await seeOnce(phone, PAYLOAD);
  await phone.getByRole("button", { name: "Search messages" }).click();
  await phone.locator(".shell.nav-open").waitFor();
  await phone.locator("#search-input").fill("zebra");
  await phone.locator("#search-input").press("Enter");
  await expectResults(phone, [PAYLOAD, REPLY, ENGLISH]);
  await phone.waitForTimeout(300); // the sidebar slides away
  await phone.screenshot({ path: join(shots, "search-phone.png") });
  await searchFor(phone, "budget");
  await phone.locator("#search-results", { hasText: "No messages match" }).waitFor();
  await searchFor(phone, "zebra");
  await expectResults(phone, [PAYLOAD, REPLY, ENGLISH]);
  await phone.locator(`#search-results .search-hit[data-message-id="${englishId}"]`).click();
  await phone.locator(`#message-list #m-${englishId}.target`).waitFor();
  await eventually(() => inView(phone, `#m-${englishId}`), "the message is in view on the phone");
  await phone.locator(".jump", { hasText: "Jump to present" }).click();
  await seeOnce(phone, LIVE);
  await eventually(() => inView(phone, `.msg:last-child`), "the present is in view");
  const leaked = await api.call("GET", `/api/v1/search?q=${encodeURIComponent("budget")}`, as(tomas));
  assertEqual(leaked.body.results.length, 0, "the API finds nothing of the private channel for Tomás");

  for (const [p, label] of [[page, "sofia"], [phone, "tomas"]]) assert(await checkNoViolations(p, label), `${label}: no CSP violation`);
  await context.close();
  await tomasContext.close();
}

/** Sends a message from the channel's composer; returns its id once the server has it. */
async function send(page, text) {
  await page.locator("#composer").fill(text);
  await page.locator("#composer").press("Enter");
  const sent = page.locator("#message-list .msg:not(.pending)", { hasText: text }).last();
  await sent.waitFor();
  return (await sent.getAttribute("id")).replace(/^m-/, "");
}

/** Runs a search from the search box (opening the navigation first on a phone). */
async function searchFor(page, query) {
  if (page.viewportSize().width <= PHONE.width) await page.keyboard.press("Control+k");
  await page.locator("#search-input").fill(query);
  await page.locator("#search-input").press("Enter");
}

/** Waits until the results are exactly these message texts, in this order. */
async function expectResults(page, texts) {
  const want = JSON.stringify(texts);
  await eventually(async () => JSON.stringify(await page.locator("#search-results .hit-body").allTextContents()) === want, `search results ${want}`);
  await eventually(async () => (await page.locator("#search-status").textContent()) === `${texts.length} message${texts.length === 1 ? "" : "s"}`, "the count of results");
}

/** Whether the element is inside the visible part of the message log. */
function inView(page, selector) {
  return page.evaluate((sel) => {
    const el = document.querySelector(`#message-list ${sel}`);
    const log = document.getElementById("messages");
    if (!el || !log) return false;
    const a = el.getBoundingClientRect();
    const b = log.getBoundingClientRect();
    return a.top >= b.top - 1 && a.bottom <= b.bottom + 1;
  }, selector);
}
