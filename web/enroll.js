// Enrollment page: reads the invitation token from the URL fragment (never sent to the server in
// a request line), creates the account, then signs in with a session cookie. Text only: nothing
// from the server is ever inserted as HTML.
const form = document.getElementById("enroll");
const status = document.getElementById("status");
const token = new URLSearchParams(location.hash.slice(1)).get("token") || "";
// Drop the token from the address bar and history once read.
history.replaceState(null, "", location.pathname);

function say(text, isError) {
  status.textContent = text;
  status.className = isError ? "error" : "ok";
}

if (!token) {
  say("This page needs the invitation link you were sent; the token is missing.", true);
  form.hidden = true;
}

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    credentials: "same-origin",
    body: JSON.stringify(body),
  });
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) {
    const message = data && data.error ? data.error.message : `The server answered ${response.status}.`;
    throw new Error(message);
  }
  return data;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const username = form.username.value.trim().toLowerCase();
  const password = form.password.value;
  const display_name = form.display_name.value.trim();
  form.querySelector("button").disabled = true;
  try {
    await post("/api/v1/auth/enroll", { token, username, password, display_name });
    const session = await post("/api/v1/auth/login", { username, password });
    form.hidden = true;
    say(`Welcome, ${session.user.display_name}. Your account is ready and you are signed in.`, false);
  } catch (error) {
    say(error.message, true);
    form.querySelector("button").disabled = false;
  }
});
