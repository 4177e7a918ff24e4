// The sign-in screen: username and password (and a one-time code when the account asks for one),
// cookie-mode login, and clear messages for wrong credentials, throttling and ended sessions.

import { api, describe } from "./api.js";
import { focusSoon, h, replace } from "./dom.js";

/** Shows the sign-in form in `root`; `onSignedIn(user)` runs after a successful login. */
export function showSignIn(root, { notice = "", onSignedIn }) {
  document.title = "Sign in · Rampart";
  const status = h("p", { class: "form-status error", role: "alert", id: "signin-error" });
  const username = h("input", { id: "signin-username", name: "username", autocomplete: "username", required: true, autocapitalize: "none", spellcheck: "false", maxlength: 64 });
  const password = h("input", { id: "signin-password", name: "password", type: "password", autocomplete: "current-password", required: true, maxlength: 256 });
  const totp = h("input", { id: "signin-totp", name: "totp", inputmode: "numeric", autocomplete: "one-time-code", maxlength: 10 });
  const totpField = h("div", { class: "field", hidden: true }, h("label", { for: "signin-totp", text: "One-time code" }), totp);
  const submit = h("button", { type: "submit", class: "btn primary wide", text: "Sign in" });
  const form = h(
    "form",
    { id: "signin", novalidate: true, "aria-describedby": "signin-error" },
    h("div", { class: "field" }, h("label", { for: "signin-username", text: "Username" }), username),
    h("div", { class: "field" }, h("label", { for: "signin-password", text: "Password" }), password),
    totpField,
    submit,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    status.textContent = "";
    if (!username.value.trim() || !password.value) {
      status.textContent = "Enter your username and password.";
      return;
    }
    submit.disabled = true;
    submit.textContent = "Signing in…";
    try {
      const body = { username: username.value.trim().toLowerCase(), password: password.value, mode: "cookie" };
      if (!totpField.hidden && totp.value.trim()) body.totp = totp.value.trim();
      const session = await api.post("/api/v1/auth/login", body);
      password.value = "";
      onSignedIn(session.user);
    } catch (error) {
      if (error.code === "mfa_required") {
        totpField.hidden = false;
        status.textContent = "Enter the code from your authenticator app.";
        focusSoon(totp);
      } else {
        status.textContent = describe(error);
        focusSoon(error.code === "invalid_credentials" ? password : username);
      }
    } finally {
      submit.disabled = false;
      submit.textContent = "Sign in";
    }
  });
  const card = h(
    "main",
    { class: "auth-card", "aria-labelledby": "signin-title" },
    h("div", { class: "brand" }, h("img", { src: "/assets/icon.svg", alt: "", width: 36, height: 36 }), h("span", { text: "Rampart" })),
    h("h1", { id: "signin-title", text: "Sign in" }),
    notice ? h("p", { class: "notice", role: "status", id: "signin-notice", text: notice }) : null,
    form,
    status,
    h("p", { class: "help center", text: "New here? Accounts are created from an invitation link sent by an administrator." }),
  );
  document.body.className = "auth-page";
  replace(root, card);
  focusSoon(username);
}
