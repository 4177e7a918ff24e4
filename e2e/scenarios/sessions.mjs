// The account page and sessions: a session revoked from another browser sends the first one back
// to sign-in at once; a password change keeps this browser signed in and ends the others; "sign
// out everywhere" ends them all; wrong credentials get a clear message.

import { join } from "node:path";

import { PASSWORD, checkLabels, checkNoViolations, newContext, signIn } from "../lib/browser.mjs";
import { assert, assertEqual, eventually } from "../lib/check.mjs";

const NEW_PASSWORD = "maple orbit lantern quietly";

export default async function sessions({ browser, api, owner, shots, base }) {
  const carol = await api.enroll(await api.invite(owner.token), "carol", "Carol Nguyen");
  const laptop = await newContext(browser, base, { label: "carol-laptop" });
  const phone = await newContext(browser, base, { label: "carol-phone" });
  const first = await laptop.newPage();
  const second = await phone.newPage();
  await signIn(first, carol.username);
  await signIn(second, carol.username);

  // The second browser lists the sessions and revokes the first browser's.
  const firstSession = await first.evaluate(async () => {
    const sessions = await (await fetch("/api/v1/auth/sessions")).json();
    return sessions.find((s) => s.current).id;
  });
  await second.locator("#nav-account").click();
  await second.locator("#account-title").waitFor();
  await eventually(async () => (await second.locator("#sessions-body tr").count()) >= 3, "the account page lists three sessions");
  await second.screenshot({ path: join(shots, "account.png") });
  assert(await checkLabels(second, "account"), "every control on the account page has a name");
  await second.locator(`#sessions-body tr[data-session-id="${firstSession}"]`).getByRole("button", { name: /Revoke/ }).click();
  await second.locator("#sessions-body").getByText("This device").waitFor();
  await eventually(async () => (await second.locator(`#sessions-body tr[data-session-id="${firstSession}"]`).count()) === 0, "the revoked session leaves the list");

  // The first browser is sent back to sign-in without touching anything.
  await first.locator("#signin-notice", { hasText: "Your session has ended" }).waitFor({ timeout: 10_000 });
  await first.getByRole("button", { name: "Sign in" }).waitFor();

  // A wrong password says so; nothing else is revealed.
  await first.getByLabel("Username").fill(carol.username);
  await first.getByLabel("Password").fill("not the password at all");
  await first.getByRole("button", { name: "Sign in" }).click();
  await first.locator("#signin-error", { hasText: "The username or password is incorrect." }).waitFor();
  await first.screenshot({ path: join(shots, "sign-in-error.png") });
  await signIn(first, carol.username);

  // Changing the password keeps this browser in, and ends the other sessions (the API's token too).
  await second.getByLabel("Current password").fill("wrong current password");
  await second.getByLabel("New password", { exact: true }).fill(NEW_PASSWORD);
  await second.getByLabel("Repeat new password").fill(NEW_PASSWORD);
  await second.getByRole("button", { name: "Change password" }).click();
  await second.locator("#password-status", { hasText: "The current password is incorrect." }).waitFor();
  await second.getByLabel("Current password").fill(PASSWORD);
  await second.getByLabel("New password", { exact: true }).fill("password");
  await second.getByLabel("Repeat new password").fill("password");
  await second.getByRole("button", { name: "Change password" }).click();
  await second.locator("#password-status.error").waitFor();
  const policyMessage = await second.locator("#password-status").textContent();
  assert(policyMessage.length > 10, `a weak password is refused with a reason (${policyMessage})`);
  await second.getByLabel("New password", { exact: true }).fill(NEW_PASSWORD);
  await second.getByLabel("Repeat new password").fill(NEW_PASSWORD);
  await second.getByRole("button", { name: "Change password" }).click();
  await second.locator("#password-status", { hasText: "Password changed" }).waitFor();
  await first.locator("#signin-notice", { hasText: "Your session has ended" }).waitFor({ timeout: 10_000 });
  assertEqual((await api.call("GET", "/api/v1/users/me", { token: carol.token })).status, 401, "the old API token is revoked");
  await second.waitForTimeout(1500);
  assertEqual(await second.locator("#signin").count(), 0, "the browser that changed the password stays signed in");
  await second.locator("#connection-status").waitFor({ state: "hidden" });

  // Sign out everywhere: this browser too.
  await signIn(first, carol.username, NEW_PASSWORD);
  await second.getByRole("button", { name: "Sign out everywhere" }).click();
  await second.getByRole("dialog").getByRole("button", { name: "Sign out everywhere" }).click();
  await second.locator("#signin-notice", { hasText: "You have signed out." }).waitFor();
  await first.locator("#signin-notice", { hasText: "Your session has ended" }).waitFor({ timeout: 10_000 });
  await first.screenshot({ path: join(shots, "sign-in.png") });

  for (const [page, label] of [[first, "carol-laptop"], [second, "carol-phone"]]) assert(await checkNoViolations(page, label), `${label}: no CSP violation`);
  await laptop.close();
  await phone.close();
}
