// Small assertions for the scenarios (playwright-core has no test runner): plain throws with a
// sentence saying what was expected, and waiting for a condition with a deadline.

export function assert(condition, message) {
  if (!condition) throw new Error(message);
}

export function assertEqual(actual, expected, message) {
  if (actual !== expected) throw new Error(`${message}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
}

/** Polls `probe` until it returns a truthy value, or throws `message` after `timeoutMs`. */
export async function eventually(probe, message, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await probe();
      if (last) return last;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`${message} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** How many message bodies in `scope` read exactly `text`. */
export async function countMessages(page, text, scope = "#message-list") {
  const exact = new RegExp(`^${text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`);
  return page.locator(`${scope} .msg-body`).filter({ hasText: exact }).count();
}

/** Waits until exactly one message in `scope` reads `text`. */
export async function seeOnce(page, text, scope = "#message-list", timeoutMs = 10_000) {
  await eventually(async () => (await countMessages(page, text, scope)) === 1, `"${text}" shown once in ${scope}`, timeoutMs);
}
