// End-to-end tests of Rampart's web client: starts the real server binary (path given as the
// first argument), drives Debian's headless Chromium through the scenarios in scenarios/, saves
// screenshots to e2e/screenshots/, and exits non-zero if anything failed.
//
//   node e2e/run.mjs target/debug/rampart [scenario…]

import { existsSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { CHROMIUM, apiClient, incidents, launch } from "./lib/browser.mjs";
import { startServer } from "./lib/server.mjs";
import chat from "./scenarios/chat.mjs";
import xss from "./scenarios/xss.mjs";
import sessions from "./scenarios/sessions.mjs";
import admin from "./scenarios/admin.mjs";
import search from "./scenarios/search.mjs";
import files from "./scenarios/files.mjs";
import links from "./scenarios/links.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const SCENARIOS = { chat, sessions, admin, xss, search, files, links };

async function main() {
  const binary = process.argv[2];
  if (!binary || !existsSync(binary)) {
    console.error("usage: node e2e/run.mjs <path to the rampart binary> [scenario…]");
    process.exit(2);
  }
  if (!existsSync(CHROMIUM)) {
    console.error(`no Chromium at ${CHROMIUM} (apt-get install chromium)`);
    process.exit(2);
  }
  const chosen = process.argv.slice(3).length ? process.argv.slice(3) : Object.keys(SCENARIOS);
  const shots = join(here, "screenshots");
  mkdirSync(shots, { recursive: true });
  for (const old of readdirSync(shots).filter((f) => f.startsWith("failed-"))) rmSync(join(shots, old));

  const started = Date.now();
  const server = await startServer(resolve(binary));
  const browser = await launch();
  const api = await apiClient(server.base);
  const failures = [];
  try {
    // The owner enrolls from the first-start link; every scenario can use this account.
    const owner = await api.enroll(server.ownerToken, "olivia", "Olivia Owner");
    const env = { server, browser, api, owner, shots, base: server.base };
    for (const name of chosen) {
      const scenario = SCENARIOS[name];
      if (!scenario) throw new Error(`no scenario ${name}`);
      const t0 = Date.now();
      const before = incidents.length;
      try {
        await scenario(env);
      } catch (error) {
        failures.push(`${name}: ${error.stack || error}`);
        await snapshotOpenPages(browser, shots, name);
      }
      for (const incident of incidents.slice(before)) failures.push(`${name}: ${incident}`);
      const ok = failures.every((f) => !f.startsWith(`${name}:`));
      console.log(`${ok ? "ok  " : "FAIL"} ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    }
  } catch (error) {
    failures.push(`setup: ${error.stack || error}`);
  } finally {
    await api.dispose().catch(() => {});
    await browser.close().catch(() => {});
    await server.stop();
  }
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  if (failures.length) {
    console.error(`\n${failures.length} failure(s) in ${seconds} s:\n`);
    for (const failure of failures) console.error(`- ${failure}\n`);
    const log = server.log().split("\n").slice(-40).join("\n");
    console.error(`server log (last lines):\n${log}`);
    process.exit(1);
  }
  console.log(`all browser scenarios passed in ${seconds} s; screenshots in ${shots}`);
}

/** Screenshots of every page still open, to see what a failed step saw. */
async function snapshotOpenPages(browser, shots, name) {
  let n = 0;
  for (const context of browser.contexts()) {
    for (const page of context.pages()) {
      n += 1;
      await page.screenshot({ path: join(shots, `failed-${name}-${n}.png`) }).catch(() => {});
    }
    await context.close().catch(() => {});
  }
}

main().catch((error) => {
  console.error(error.stack || error);
  process.exit(1);
});
