// Entry point of the web client: asks who is signed in, then shows sign-in or the app, and owns
// the way back to sign-in when the session ends (revoked, expired, account disabled).

import { api, describe, onSessionEnded } from "./api.js";
import { h, replace } from "./dom.js";
import { showSignIn } from "./signin.js";
import { startShell } from "./shell.js";
import { forgetAll } from "./users.js";

const root = document.getElementById("app");
let shell = null;

function enter(me) {
  if (shell) shell.stop();
  shell = startShell(root, me, { onSignedOut: () => leave("You have signed out.") });
}

function leave(notice) {
  if (shell) {
    shell.stop();
    shell = null;
  }
  forgetAll();
  for (const dialog of document.querySelectorAll("dialog[open]")) dialog.close();
  if (location.hash) history.replaceState(null, "", location.pathname);
  showSignIn(root, { notice, onSignedIn: enter });
}

onSessionEnded(() => {
  if (shell) leave("Your session has ended. Sign in again to continue.");
});

async function boot() {
  try {
    enter(await api.get("/api/v1/users/me"));
  } catch (error) {
    if (error.code === "unauthenticated") return showSignIn(root, { onSignedIn: enter });
    replace(
      root,
      h(
        "main",
        { class: "auth-card" },
        h("h1", { text: "Rampart is unreachable" }),
        h("p", { class: "form-status error", role: "alert", text: describe(error) }),
        h("button", { type: "button", class: "btn primary wide", text: "Try again", on: { click: boot } }),
      ),
    );
  }
}

boot();
