// Shared by the browser tests: a real warden on a free loopback port with
// its own SQLite database, and headless Debian Chromium driven by
// playwright-core (never a downloaded browser).
//
// Environment:
//   WARDEN_BIN   the warden binary (default: ../target/debug/warden)
//   CHROMIUM     the browser (default: /usr/bin/chromium)

import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const repo = resolve(here, '..');
export const screenshots = join(repo, 'screenshots');

export const PASSWORD = 'correct horse battery';

function freePort() {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.once('error', fail);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => ok(port));
    });
  });
}

/// Starts `warden serve`; resolves once /healthz answers.
export async function startWarden(extraEnv = {}) {
  const bin = process.env.WARDEN_BIN || join(repo, 'target', 'debug', 'warden');
  const dir = mkdtempSync(join(tmpdir(), 'warden-browser-'));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const env = {
    ...process.env,
    WARDEN_BIND: `127.0.0.1:${port}`,
    WARDEN_DATABASE_URL: `sqlite://${dir}/warden.db`,
    // Cheap hashing: the tests are about the browser, not argon2's cost.
    WARDEN_ARGON2_MEMORY_KIB: '256',
    WARDEN_ARGON2_ITERATIONS: '1',
    WARDEN_LOG: 'warn',
    ...extraEnv,
  };
  let log = '';
  const child = spawn(bin, ['serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.on('data', (d) => (log += d));
  child.stderr.on('data', (d) => (log += d));
  const exited = new Promise((ok) => child.once('exit', (code) => ok(code)));

  const deadline = Date.now() + 30_000;
  for (;;) {
    const early = await Promise.race([exited, Promise.resolve('running')]);
    if (early !== 'running') throw new Error(`warden exited with ${early}:\n${log}`);
    try {
      const r = await fetch(`${url}/healthz`);
      if (r.ok) break;
    } catch (_) {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`warden did not answer /healthz within 30 s:\n${log}`);
    }
    await new Promise((ok) => setTimeout(ok, 100));
  }

  return {
    url,
    log: () => log,
    /// Runs a `warden` command on this server's database; its stdout.
    cli(args, input) {
      return execFileSync(bin, args, { env, input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
    },
    /// Registers an OAuth client with `warden clients create`; its JSON.
    createClient(args) {
      return JSON.parse(this.cli(['clients', 'create', ...args]));
    },
    async register(username, password = PASSWORD) {
      const r = await fetch(`${url}/users`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ username, email: `${username}@example.com`, password }),
      });
      if (r.status !== 201) throw new Error(`registering ${username}: ${r.status} ${await r.text()}`);
      return r.json();
    },
    async stop() {
      child.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/// Launches headless Chromium with the flags this machine needs (no
/// background connections: the network outside is closed).
export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/// Saves a screenshot as screenshots/NAME.png: of `element` (a locator)
/// when given, else of the whole page.
export async function screenshot(page, name, element) {
  mkdirSync(screenshots, { recursive: true });
  const path = join(screenshots, `${name}.png`);
  if (element) await element.screenshot({ path });
  else await page.screenshot({ path, fullPage: true });
  return path;
}

/// Fails the test if the page requests anything outside `origin`.
export function onlyOrigin(page, origin) {
  const foreign = [];
  page.on('request', (req) => {
    const u = req.url();
    if (!u.startsWith(`${origin}/`) && !u.startsWith('data:') && !u.startsWith('blob:')) {
      foreign.push(u);
    }
  });
  return foreign;
}

/// Starts examples/signin.rs (built by `cargo test`: target/debug/examples/
/// signin) for `client` (the JSON of `warden clients create`) on `port`,
/// signing in through `wardenUrl`; resolves once it answers.
export async function startSigninExample(wardenUrl, client, port) {
  const bin = process.env.SIGNIN_BIN || join(repo, 'target', 'debug', 'examples', 'signin');
  const url = `http://127.0.0.1:${port}`;
  const env = {
    ...process.env,
    WARDEN_URL: wardenUrl,
    SIGNIN_CLIENT_ID: client.client_id,
    SIGNIN_CLIENT_SECRET: client.client_secret,
    SIGNIN_BIND: `127.0.0.1:${port}`,
  };
  let log = '';
  const child = spawn(bin, [], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.on('data', (d) => (log += d));
  child.stderr.on('data', (d) => (log += d));
  const exited = new Promise((ok) => child.once('exit', (code) => ok(code)));
  const deadline = Date.now() + 30_000;
  for (;;) {
    const early = await Promise.race([exited, Promise.resolve('running')]);
    if (early !== 'running') throw new Error(`signin example exited with ${early}:\n${log}`);
    try {
      if ((await fetch(`${url}/`)).ok) break;
    } catch (_) {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`signin example did not answer within 30 s:\n${log}`);
    }
    await new Promise((ok) => setTimeout(ok, 100));
  }
  return {
    url,
    log: () => log,
    async stop() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

export { freePort };
