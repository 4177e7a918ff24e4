// The admin console: the owner invites a user, who enrolls from the link and lands in the app;
// the owner raises their role (a security alert), then disables them and their open page loses
// access at once. The audit log verifies as intact; alerts and key status are shown.

import { join } from "node:path";

import { PASSWORD, checkLabels, checkNoViolations, newContext, signIn } from "../lib/browser.mjs";
import { assert, eventually } from "../lib/check.mjs";

export default async function admin({ browser, owner, shots, base }) {
  const ownerContext = await newContext(browser, base, { label: "owner" });
  const o = await ownerContext.newPage();
  await signIn(o, owner.username);
  await o.locator("#nav-admin").click();
  await o.locator("#admin-title").waitFor();

  // Invite a member for 48 hours; the link is shown once.
  await o.getByLabel("Role", { exact: true }).selectOption("member");
  await o.getByLabel("Expires after (hours)").fill("48");
  await o.getByRole("button", { name: "Create invitation" }).click();
  const link = await o.locator("#invite-link").inputValue();
  assert(link.startsWith(`${base}/enroll#token=`), `the invitation is a link to the enrollment page (${link})`);

  // The new user enrolls from the link and is signed in.
  const daveContext = await newContext(browser, base, { label: "dave" });
  const d = await daveContext.newPage();
  await d.goto(link);
  assert(!d.url().includes("token="), "the token leaves the address bar once read");
  await d.getByLabel("Username").fill("dave");
  await d.getByLabel("Display name").fill("Dave Ito");
  await d.getByLabel("Password").fill(PASSWORD);
  await d.screenshot({ path: join(shots, "enroll.png") });
  await d.getByRole("button", { name: "Create account" }).click();
  await d.locator("#sidebar").waitFor();
  await d.locator(".me-name", { hasText: "Dave Ito" }).waitFor();

  // The owner sees them, makes them an admin (raising an alert), then disables them.
  await o.getByRole("button", { name: "Refresh" }).click();
  const row = o.locator('#users-body tr[data-username="dave"]');
  await row.waitFor();
  await row.getByLabel("Role of dave").selectOption("admin");
  await o.getByText("dave is now admin.").waitFor();
  await row.getByRole("button", { name: "Disable dave" }).click();
  await o.getByRole("dialog").getByRole("button", { name: "Disable" }).click();
  await o.getByText("dave is disabled and signed out everywhere.").waitFor();
  await row.locator(".pill", { hasText: "Disabled" }).waitFor();

  // Dave's open page loses access: back to sign-in, and signing in again is refused.
  await d.locator("#signin-notice", { hasText: "Your session has ended" }).waitFor({ timeout: 10_000 });
  await d.getByLabel("Username").fill("dave");
  await d.getByLabel("Password").fill(PASSWORD);
  await d.getByRole("button", { name: "Sign in" }).click();
  await d.locator("#signin-error").filter({ hasText: /incorrect|disabled/ }).waitFor();
  await o.screenshot({ path: join(shots, "admin-users.png") });
  assert(await checkLabels(o, "admin users"), "every control in the users tab has a name");

  // The audit log: newest first, the disable is there, and the chain verifies.
  await o.getByRole("tab", { name: "Audit log" }).click();
  await o.locator("#audit-body tr").first().waitFor();
  await o.locator("#audit-body code", { hasText: "admin.user.disabled" }).first().waitFor();
  await o.getByRole("button", { name: "Verify chain" }).click();
  await o.locator("#verify-ok", { hasText: "Chain intact." }).waitFor();
  await o.screenshot({ path: join(shots, "admin-audit.png") });
  const newestFirst = await o.locator("#audit-body tr").evaluateAll((rows) => rows.map((r) => Number(r.dataset.seq)));
  assert(newestFirst.every((seq, i) => i === 0 || seq < newestFirst[i - 1]), "audit records are listed newest first");
  if (await o.locator("#audit-older").isEnabled()) {
    await o.locator("#audit-older").click();
    await eventually(async () => Number(await o.locator("#audit-body tr").first().getAttribute("data-seq")) < newestFirst[newestFirst.length - 1], "Older pages back");
    await o.locator("#audit-newer").click();
  }

  // Security alerts: the role raised to admin is one.
  await o.getByRole("tab", { name: "Security alerts" }).click();
  await o.locator("#alerts-list .alert-item", { hasText: "Privilege raised" }).first().waitFor();
  await o.screenshot({ path: join(shots, "admin-alerts.png") });

  // Key status: one active KEK, present on this node.
  await o.getByRole("tab", { name: "Encryption keys" }).click();
  await o.locator("#keys-table tbody tr", { hasText: "active" }).waitFor();
  await o.screenshot({ path: join(shots, "admin-keys.png") });

  for (const [page, label] of [[o, "owner"], [d, "dave"]]) assert(await checkNoViolations(page, label), `${label}: no CSP violation`);
  await ownerContext.close();
  await daveContext.close();
}
