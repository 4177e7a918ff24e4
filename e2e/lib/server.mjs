// Starts the real `rampart` binary for the end-to-end run: fresh temporary directories, a free
// loopback port, and the owner's one-time enrollment token from the file the server writes.

import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

const START_TIMEOUT_MS = 30_000;

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.unref();
    probe.on("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/** Starts `rampart serve`; resolves with {base, keyDir, ownerToken, log(), stop()}. */
export async function startServer(binary) {
  const root = mkdtempSync(join(tmpdir(), "rampart-e2e-"));
  const port = await freePort();
  const config = join(root, "rampart.toml");
  // No clamd here: uploads are not scanned (the Rust tests cover the scanner with a real clamd).
  writeFileSync(config, `audit_dir = "${join(root, "audit")}"\n\n[files]\nscanning = false\n`);
  const keyDir = join(root, "keys");
  const child = spawn(
    binary,
    ["serve", "--config", config, "--listen", `127.0.0.1:${port}`, "--data-dir", join(root, "data"), "--key-dir", keyDir],
    { env: { ...process.env, RUST_LOG: "info" }, stdio: ["ignore", "pipe", "pipe"] },
  );
  let output = "";
  let exited = null;
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`rampart did not start in ${START_TIMEOUT_MS} ms:\n${output}`)), START_TIMEOUT_MS);
    const onData = (chunk) => {
      output += chunk.toString();
      if (output.includes("rampart is listening on")) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("exit", (code, signal) => {
      exited = { code, signal };
      clearTimeout(timer);
      reject(new Error(`rampart exited early (${code ?? signal}):\n${output}`));
    });
  });
  await ready;
  const enrollment = readFileSync(join(keyDir, "owner-enrollment.txt"), "utf8");
  const ownerToken = /token=([A-Za-z0-9_-]+)/.exec(enrollment)?.[1];
  if (!ownerToken) throw new Error("no owner enrollment token in owner-enrollment.txt");
  return {
    base: `https://localhost:${port}`,
    keyDir,
    ownerToken,
    log: () => output,
    async stop() {
      if (!exited) {
        child.kill("SIGTERM");
        await new Promise((resolve) => {
          const timer = setTimeout(() => {
            child.kill("SIGKILL");
            resolve();
          }, 10_000);
          child.on("exit", () => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
      rmSync(root, { recursive: true, force: true });
    },
  };
}
