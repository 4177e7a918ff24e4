// Two people chat in real time in two browser contexts: a channel, live messages both ways, the
// typing line, a thread, an edit and a delete, a direct message with its unread count. Then one
// of them goes offline, messages arrive meanwhile, and back online every one shows exactly once.

import { join } from "node:path";

import { DESKTOP, PHONE, checkLabels, checkNoViolations, newContext, signIn } from "../lib/browser.mjs";
import { assert, assertEqual, countMessages, eventually, seeOnce } from "../lib/check.mjs";

const OFFLINE_MESSAGES = 6;

export default async function chat({ browser, api, owner, shots, base }) {
  const alice = await api.enroll(await api.invite(owner.token), "alice", "Alice Martin");
  const bob = await api.enroll(await api.invite(owner.token), "bob", "Bob Okafor");

  const aliceContext = await newContext(browser, base, { label: "alice" });
  const bobContext = await newContext(browser, base, { label: "bob" });
  const a = await aliceContext.newPage();
  const b = await bobContext.newPage();
  await signIn(a, alice.username);
  await signIn(b, bob.username);

  // Alice creates a public channel in the UI; Bob finds it and joins.
  await a.getByRole("button", { name: "Create a channel" }).click();
  await a.getByLabel("Name").fill("general");
  await a.getByLabel("Topic (optional)").fill("Company-wide news and questions — see https://intranet.example/handbook");
  await a.getByRole("button", { name: "Create channel" }).click();
  await a.locator("#conv-title", { hasText: "general" }).waitFor();
  await b.getByRole("button", { name: "Browse channels" }).click();
  await b.locator("#browse-list").getByRole("button", { name: /general/ }).click();
  await b.locator("#join-channel").click();
  await b.locator("#channel-list a", { hasText: "general" }).waitFor();

  // Live both ways, and the typing line.
  await send(a, "Morning all! The release notes are at https://intranet.example/notes — comments welcome.");
  await seeOnce(b, "Morning all! The release notes are at https://intranet.example/notes — comments welcome.");
  const link = b.locator("#message-list a.link").first();
  assertEqual(await link.getAttribute("href"), "https://intranet.example/notes", "links are made clickable");
  assertEqual(await link.getAttribute("rel"), "noopener noreferrer nofollow", "links open with no opener and no referrer");
  await b.locator("#composer").fill("Reading them n");
  await a.locator("#typing", { hasText: "Bob Okafor is typing" }).waitFor();
  await b.locator("#composer").fill("");
  await send(b, "Thanks Alice, reading them now.");
  await seeOnce(a, "Thanks Alice, reading them now.");

  // A thread: Alice replies to Bob's message; Bob sees the reply count and opens the thread.
  const bobsMessage = a.locator("#message-list .msg", { hasText: "Thanks Alice, reading them now." });
  await bobsMessage.hover();
  await bobsMessage.getByRole("button", { name: "Reply in thread" }).click();
  await a.locator("#thread-composer").fill("Section 3 changed since yesterday, have a look.");
  await a.locator("#thread-composer").press("Enter");
  await seeOnce(a, "Section 3 changed since yesterday, have a look.", "#thread-replies");
  await b.locator("#message-list .replies", { hasText: "1 reply" }).click();
  await seeOnce(b, "Section 3 changed since yesterday, have a look.", "#thread-replies");
  await send(b, "Will do.", "#thread-composer");
  await seeOnce(a, "Will do.", "#thread-replies");
  await a.getByRole("button", { name: "Close thread" }).click();

  // Keyboard: the log is one stop, arrows move between messages, a focused message's actions
  // join the tab order; Up in an empty composer edits your last message, Escape cancels.
  await a.locator("#messages").focus();
  await a.keyboard.press("ArrowUp");
  assert(await a.evaluate(() => document.activeElement.classList.contains("msg")), "ArrowUp focuses the last message");
  await a.keyboard.press("Tab");
  assert(
    await a.evaluate(() => document.activeElement.tagName === "BUTTON" && document.activeElement.closest(".msg") === document.querySelector("#message-list .msg:last-child")),
    "Tab reaches the focused message's buttons",
  );
  await a.locator("#composer").focus();
  await a.keyboard.press("ArrowUp");
  await a.getByRole("textbox", { name: "Message text" }).waitFor();
  await a.keyboard.press("Escape");
  await a.getByRole("textbox", { name: "Message text" }).waitFor({ state: "detached" });
  assert(await checkLabels(a, "alice chat"), "every control in the chat has a name");

  // Edit and delete, seen live by the other side.
  await send(a, "Lunch at 12:30?");
  await seeOnce(b, "Lunch at 12:30?");
  const lunch = a.locator("#message-list .msg", { hasText: "Lunch at 12:30?" });
  await lunch.hover();
  await lunch.getByRole("button", { name: "Edit message" }).click();
  await a.getByRole("textbox", { name: "Message text" }).fill("Lunch at 13:00?");
  await a.getByRole("textbox", { name: "Message text" }).press("Enter");
  await seeOnce(b, "Lunch at 13:00?");
  await b.locator("#message-list .msg", { hasText: "Lunch at 13:00?" }).locator(".edited").waitFor();
  await send(a, "Oops, wrong channel");
  await seeOnce(b, "Oops, wrong channel");
  const oops = a.locator("#message-list .msg", { hasText: "Oops, wrong channel" });
  await oops.hover();
  await oops.getByRole("button", { name: "Delete message" }).click();
  await a.getByRole("dialog").getByRole("button", { name: "Delete" }).click();
  await eventually(async () => (await countMessages(b, "Oops, wrong channel")) === 0, "the deleted message is gone for Bob");
  await b.locator("#message-list .msg.deleted").first().waitFor();

  // A direct message: found by user search; Bob sees it with an unread count.
  await a.getByRole("button", { name: "New direct message" }).click();
  await a.getByLabel("Find a colleague").fill("bob");
  await a.locator("#dm-results").getByRole("button", { name: /Bob Okafor/ }).click();
  await a.locator("#conv-title", { hasText: "Bob Okafor" }).waitFor();
  await send(a, "Quick question about the rollout, got a minute?");
  const dmLink = b.locator("#dm-list a", { hasText: "Alice Martin" });
  await dmLink.locator(".badge", { hasText: "1" }).waitFor();
  await dmLink.click();
  await seeOnce(b, "Quick question about the rollout, got a minute?");
  await eventually(async () => (await dmLink.locator(".badge").count()) === 0, "reading clears the unread count");
  await send(b, "Sure, call me.");
  await seeOnce(a, "Sure, call me.");

  // Offline: Bob's network goes; Alice keeps writing; Bob comes back and sees each message once.
  await b.locator("#channel-list a", { hasText: "general" }).click();
  await seeOnce(b, "Lunch at 13:00?");
  await a.locator("#channel-list a", { hasText: "general" }).click();
  await seeOnce(a, "Lunch at 13:00?");
  await bobContext.setOffline(true);
  await b.locator("#connection-status", { hasText: /reconnecting/i }).waitFor();
  await b.screenshot({ path: join(shots, "chat-reconnecting.png") });
  const missed = Array.from({ length: OFFLINE_MESSAGES }, (_, i) => `While you were away ${i + 1}/${OFFLINE_MESSAGES}`);
  for (const text of missed) await send(a, text);
  await send(a, "A reply in the thread while you were away", null, async () => {
    const thread = a.locator("#message-list .msg", { hasText: "Thanks Alice, reading them now." });
    await thread.locator(".replies").click();
    return "#thread-composer";
  });
  await a.getByRole("button", { name: "Close thread" }).click();
  await new Promise((r) => setTimeout(r, 700));
  for (const text of missed) assertEqual(await countMessages(b, text), 0, "nothing arrives while offline");
  // Bob writes while offline: the send fails visibly, and a retry after reconnecting (same
  // client_id) delivers it once.
  await b.locator("#composer").fill("Written on the train");
  await b.locator("#composer").press("Enter");
  await b.locator("#message-list .msg.failed", { hasText: "Written on the train" }).getByText("Not sent").waitFor();
  await bobContext.setOffline(false);
  await b.locator("#connection-status").waitFor({ state: "hidden", timeout: 20_000 });
  await b.locator("#message-list .msg.failed").getByRole("button", { name: "Retry" }).click();
  await seeOnce(a, "Written on the train");
  await seeOnce(b, "Written on the train");
  for (const text of missed) await seeOnce(b, text, "#message-list", 15_000);
  await b.locator("#message-list .replies", { hasText: "3 replies" }).waitFor();
  // Once more after settling: still exactly once, and nothing older doubled.
  await new Promise((r) => setTimeout(r, 500));
  for (const text of [...missed, "Lunch at 13:00?", "Thanks Alice, reading them now."]) {
    assertEqual(await countMessages(b, text), 1, `"${text}" shown exactly once after reconnecting`);
  }
  const ids = await b.locator("#message-list .msg").evaluateAll((els) => els.map((el) => el.id));
  assertEqual(new Set(ids).size, ids.length, "no message element twice");

  // The socket itself dropped (server side gone from the browser's view): same recovery.
  await b.evaluate(() => window.dispatchEvent(new Event("offline")));
  await b.locator("#connection-status", { hasText: /reconnecting/i }).waitFor();
  await send(a, "After the second drop");
  await b.evaluate(() => window.dispatchEvent(new Event("online")));
  await seeOnce(b, "After the second drop", "#message-list", 15_000);

  // Screenshots of the chat: desktop with a thread open, and a phone.
  await a.locator("#message-list .replies").first().click();
  await seeOnce(a, "Will do.", "#thread-replies");
  await a.mouse.move(640, 780);
  await a.waitForTimeout(200);
  await a.screenshot({ path: join(shots, "chat.png") });
  await a.setViewportSize(PHONE);
  await a.getByRole("button", { name: "Close thread" }).click();
  await a.waitForTimeout(350); // the sidebar slides away when the layout turns narrow
  await a.screenshot({ path: join(shots, "chat-phone.png") });
  await a.locator(".view-header .nav-toggle").click();
  await a.locator(".shell.nav-open").waitFor();
  await a.waitForTimeout(300);
  await a.screenshot({ path: join(shots, "chat-phone-nav.png") });
  await a.keyboard.press("Escape");
  await a.setViewportSize(DESKTOP);
  await a.emulateMedia({ colorScheme: "dark" });
  await a.waitForTimeout(300);
  await a.screenshot({ path: join(shots, "chat-dark.png") });
  await a.emulateMedia({ colorScheme: "light" });

  for (const [page, label] of [[a, "alice"], [b, "bob"]]) assert(await checkNoViolations(page, label), `${label}: no CSP violation`);
  await aliceContext.close();
  await bobContext.close();
}

/** Types a message in a composer and sends it with Enter. */
async function send(page, text, composer = "#composer", open = null) {
  const target = open ? await open() : composer;
  const field = page.locator(target);
  await field.fill(text);
  await field.press("Enter");
  const scope = target === "#thread-composer" ? "#thread-replies" : "#message-list";
  await page.locator(`${scope} .msg:not(.pending) .msg-body`, { hasText: text }).last().waitFor();
}
