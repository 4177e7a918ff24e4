// Link detection stays linear: messages shaped to make URL trimming slow (a URL followed by
// thousands of closing brackets, dots, opening brackets, "()." and the like) render in under
// RENDER_MS_MAX each, and the page shows them live and from history. Ordinary links keep their
// shape: trailing punctuation is trimmed, balanced parentheses are kept.

import { newContext, signIn } from "../lib/browser.mjs";
import { assert, assertEqual, eventually } from "../lib/check.mjs";

// The bound of issue 16: one message must never freeze a member's screen.
const RENDER_MS_MAX = 50;
// The server's message limit (rampart-core limits.rs MESSAGE_CHARS_MAX).
const MESSAGE_CHARS_MAX = 16_000;
// Each shape is timed this many times; the fastest run counts (a shared machine can pause any one).
const RENDER_RUNS = 5;

/** `head` followed by `unit` repeated to fill the message limit. */
function filled(head, unit, tail = "") {
  const count = Math.floor((MESSAGE_CHARS_MAX - head.length - tail.length) / unit.length);
  return head + unit.repeat(count) + tail;
}

/** Messages that a quadratic (or backtracking) trimmer takes seconds to render. */
export const ADVERSARIAL = {
  "closing parentheses": filled("http://a", ")"),
  dots: filled("http://a", "."),
  "dots then a letter": filled("http://a", ".", "x"),
  "opening parentheses": filled("http://a", "("),
  "alternating ().": filled("http://a", "()."),
  "alternating .)": filled("http://a", ".)"),
  "mixed closers": filled("http://a", ")]}"),
  "question marks and underscores": filled("http://a", "?_"),
  "schemes only": filled("", "http://"),
  "many short links": filled("", "http://a) "),
  "links at the length cap": filled("", `http://a/${"x".repeat(2000)}${")".repeat(2000)} `),
  "direction controls": filled("http://a", "\u202e"),
  "text between direction controls": filled("http://a", "a\u202e"),
  "mixed direction controls": filled("", "\u202e\u2066a\u200f"),
};

/** Ordinary messages and the one link each must show: text and href. */
const ORDINARY = [
  ["See https://en.wikipedia.org/wiki/Foo_(bar).", "https://en.wikipedia.org/wiki/Foo_(bar)", "https://en.wikipedia.org/wiki/Foo_(bar)"],
  ["(notes at https://example.com/notes)", "https://example.com/notes", "https://example.com/notes"],
  ["Is it https://example.com/a?b=1!?", "https://example.com/a?b=1", "https://example.com/a?b=1"],
  ["[https://example.com/x]", "https://example.com/x", "https://example.com/x"],
  ["https://example.com/{id}}.", "https://example.com/{id}", "https://example.com/%7Bid%7D"],
];

export default async function links({ browser, api, owner, base }) {
  const channel = await api.must("POST", "/api/v1/channels", { token: owner.token, data: { name: "link-lab", kind: "public" } });
  const context = await newContext(browser, base, { label: "owner-links" });
  const page = await context.newPage();
  await signIn(page, owner.username);

  // Timed where it matters: the client's own richText, in the page, each shape alone.
  const timings = await page.evaluate(
    async ({ shapes, runs }) => {
      const { richText } = await import("/assets/text.js");
      const controls = /[\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]/g;
      const out = {};
      for (const [label, body] of Object.entries(shapes)) {
        let best = Infinity;
        for (let run = 0; run < runs; run += 1) {
          const holder = document.createElement("div");
          holder.className = "msg-body";
          const t0 = performance.now();
          holder.append(richText(body));
          document.body.append(holder);
          holder.getBoundingClientRect();
          best = Math.min(best, performance.now() - t0);
          // Past a number of labels, further direction controls are left out, and nothing else.
          const text = holder.textContent;
          const same = holder.querySelector('.bidi-ctl[data-cp^="+"]') ? text.replace(controls, "") === body.replace(controls, "") : text === body;
          if (!same) throw new Error(`${label}: the text is not shown as it is`);
          holder.remove();
        }
        out[label] = best;
      }
      return out;
    },
    { shapes: ADVERSARIAL, runs: RENDER_RUNS },
  );
  const slow = Object.entries(timings).filter(([, ms]) => ms >= RENDER_MS_MAX);
  assert(!slow.length, `messages render in over ${RENDER_MS_MAX} ms: ${slow.map(([label, ms]) => `${label} ${ms.toFixed(1)} ms`).join(", ")}`);
  const slowest = Object.entries(timings).sort((a, b) => b[1] - a[1])[0];
  console.log(`     adversarial links: ${Object.keys(timings).length} shapes, slowest ${slowest[0]} ${slowest[1].toFixed(1)} ms`);

  // Live: the messages arrive while the channel is open; then the same from history.
  await page.locator("#channel-list a", { hasText: "link-lab" }).click();
  await page.locator("#conv-title", { hasText: "link-lab" }).waitFor();
  const bodies = [...Object.values(ADVERSARIAL), ...ORDINARY.map(([body]) => body)];
  for (const body of bodies) await api.must("POST", `/api/v1/channels/${channel.id}/messages`, { token: owner.token, data: { body } });
  const shown = async () => (await page.locator("#message-list .msg-body").count()) === bodies.length;
  await eventually(shown, `all ${bodies.length} messages shown live`, 15_000);
  await checkOrdinaryLinks(page);
  await page.reload();
  await page.locator("#channel-list a", { hasText: "link-lab" }).click();
  await eventually(shown, `all ${bodies.length} messages shown from history`, 15_000);
  await checkOrdinaryLinks(page);
  await context.close();
}

/** Each ordinary message shows exactly its one link, trimmed as a reader expects. */
async function checkOrdinaryLinks(page) {
  for (const [body, text, href] of ORDINARY) {
    const message = page.locator("#message-list .msg-body").filter({ hasText: body });
    const link = message.locator("a.link");
    assertEqual(await link.count(), 1, `${JSON.stringify(body)} holds one link`);
    assertEqual(await link.textContent(), text, `the link text of ${JSON.stringify(body)}`);
    assertEqual(await link.getAttribute("href"), href, `the href of ${JSON.stringify(body)}`);
  }
}
