// Headless Chromium from Debian (/usr/bin/chromium) driven by playwright-core, with every page
// watched for what must never happen: a dialog, an uncaught error, a CSP violation.

import { chromium, request } from "playwright-core";

export const CHROMIUM = process.env.RAMPART_E2E_CHROMIUM || "/usr/bin/chromium";
// The machine's network is closed: no background fetches, no QUIC, no first-run work.
const FLAGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-dev-shm-usage",
];
export const PASSWORD = "correct horse battery staple";
export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };

export function launch() {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: FLAGS });
}

/** Problems seen on any watched page; the run fails if this is not empty at the end. */
export const incidents = [];

/** A browser context (one person's browser) whose pages are all watched. */
export async function newContext(browser, base, { viewport = DESKTOP, label = "page", isMobile = false } = {}) {
  const context = await browser.newContext({ baseURL: base, ignoreHTTPSErrors: true, viewport, isMobile, hasTouch: isMobile, locale: "en-GB", timezoneId: "Europe/London" });
  // Runs before any page script, in the page's own world: records CSP violations the page sees.
  await context.addInitScript(() => {
    window.__cspViolations = [];
    document.addEventListener("securitypolicyviolation", (event) => {
      window.__cspViolations.push(`${event.violatedDirective} blocked ${event.blockedURI || "inline"} (${event.sourceFile || ""}:${event.lineNumber || 0}) ${event.sample || ""}`);
    });
  });
  context.on("page", (page) => watch(page, label));
  return context;
}

function watch(page, label) {
  page.on("dialog", async (dialog) => {
    incidents.push(`${label}: a ${dialog.type()} dialog opened: ${JSON.stringify(dialog.message())}`);
    await dialog.dismiss().catch(() => {});
  });
  page.on("pageerror", (error) => incidents.push(`${label}: uncaught error in the page: ${error.message}`));
  page.on("console", (message) => {
    const text = message.text();
    if (process.env.E2E_DEBUG) console.log(`[${label} console.${message.type()}] ${text}`);
    if (/Content Security Policy|Trusted Type|TrustedHTML|TrustedScript/i.test(text)) incidents.push(`${label}: console: ${text}`);
  });
}

/** Fails (adds an incident) if the page recorded a CSP violation. */
export async function checkNoViolations(page, label) {
  const violations = await page.evaluate(() => window.__cspViolations || []).catch(() => []);
  for (const v of violations) incidents.push(`${label}: securitypolicyviolation: ${v}`);
  return violations.length === 0;
}

/** Every control on the page has a name a screen reader can announce. */
export async function checkLabels(page, label) {
  const unnamed = await page.evaluate(() => {
    const found = [];
    for (const el of document.querySelectorAll("button, a[href], input, select, textarea")) {
      if (el.type === "hidden" || el.closest("[hidden]")) continue;
      const named =
        el.getAttribute("aria-label") ||
        (el.labels && el.labels.length > 0) ||
        (el.matches("button, a") && el.textContent.trim()) ||
        el.getAttribute("title");
      if (!named) found.push(el.outerHTML.slice(0, 120));
    }
    return found;
  });
  for (const control of unnamed) incidents.push(`${label}: a control without a name: ${control}`);
  return unnamed.length === 0;
}

/** Signs in through the sign-in form and waits for the app. */
export async function signIn(page, username, password = PASSWORD) {
  await page.goto("/");
  await page.getByLabel("Username").fill(username);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator("#sidebar").waitFor();
}

/** An API client for setting the scene (bearer tokens, no browser). */
export async function apiClient(base) {
  const http = await request.newContext({ baseURL: base, ignoreHTTPSErrors: true });
  async function call(method, path, { token, data } = {}) {
    const response = await http.fetch(path, { method, headers: token ? { Authorization: `Bearer ${token}` } : {}, data });
    const text = await response.text();
    const body = text ? JSON.parse(text) : null;
    return { status: response.status(), body };
  }
  async function must(method, path, options) {
    const result = await call(method, path, options);
    if (result.status >= 400) throw new Error(`${method} ${path} → ${result.status} ${JSON.stringify(result.body)}`);
    return result.body;
  }
  return {
    call,
    must,
    async enroll(invitation, username, displayName) {
      const body = await must("POST", "/api/v1/auth/enroll", { data: { token: invitation, username, display_name: displayName, password: PASSWORD } });
      const login = await must("POST", "/api/v1/auth/login", { data: { username, password: PASSWORD, mode: "token" } });
      return { ...body.user, token: login.token, username };
    },
    async invite(adminToken, role = "member") {
      return (await must("POST", "/api/v1/admin/invitations", { token: adminToken, data: { role } })).token;
    },
    dispose: () => http.dispose(),
  };
}
