// The enrollment page an invitation link opens: reads the one-time token from the URL fragment
// (never sent to the server in a request line), creates the account, signs in with a session
// cookie and opens the app. Text only: nothing from the server is ever inserted as markup.

import { api, describe } from "./api.js";

const form = document.getElementById("enroll");
const status = document.getElementById("status");
const token = new URLSearchParams(location.hash.slice(1)).get("token") || "";
// Drop the token from the address bar and history once read.
history.replaceState(null, "", location.pathname);

function say(text, isError) {
  status.textContent = text;
  status.className = `form-status ${isError ? "error" : "ok"}`;
  status.setAttribute("role", isError ? "alert" : "status");
}

if (!token) {
  say("This page needs the invitation link you were sent; the token is missing. Ask an administrator for a new link.", true);
  form.hidden = true;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const username = form.username.value.trim().toLowerCase();
  const password = form.password.value;
  const display_name = form.display_name.value.trim();
  if (!username || !display_name || !password) {
    say("Fill in every field.", true);
    return;
  }
  const button = form.querySelector("button");
  button.disabled = true;
  try {
    await api.post("/api/v1/auth/enroll", { token, username, password, display_name });
    await api.post("/api/v1/auth/login", { username, password, mode: "cookie" });
    form.hidden = true;
    say("Your account is ready. Opening Rampart…", false);
    location.assign("/");
  } catch (error) {
    say(describe(error), true);
    button.disabled = false;
  }
});
