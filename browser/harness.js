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

/// Serves the single-page app of browser/spa/ (with oidc-client-ts's browser
/// build from node_modules) on a free loopback port: / and /callback are its
/// page, /config.js sets `window.SPA_CONFIG` to what `configure` was last
/// given (the OP's issuer and the client id).
export async function startSpa() {
  const { createServer: createHttpServer } = await import('node:http');
  const { readFileSync } = await import('node:fs');
  const spaDir = join(repo, 'browser', 'spa');
  const files = {
    '/': [join(spaDir, 'index.html'), 'text/html; charset=utf-8'],
    '/callback': [join(spaDir, 'index.html'), 'text/html; charset=utf-8'],
    '/app.js': [join(spaDir, 'app.js'), 'text/javascript; charset=utf-8'],
    '/oidc-client-ts.js': [
      join(here, 'node_modules', 'oidc-client-ts', 'dist', 'browser', 'oidc-client-ts.js'),
      'text/javascript; charset=utf-8',
    ],
  };
  let config = {};
  const server = createHttpServer((req, res) => {
    const path = new URL(req.url, 'http://spa').pathname;
    if (path === '/config.js') {
      res.writeHead(200, { 'Content-Type': 'text/javascript; charset=utf-8', 'Cache-Control': 'no-store' });
      res.end(`window.SPA_CONFIG = ${JSON.stringify(config)};\n`);
      return;
    }
    if (path === '/favicon.ico') {
      res.writeHead(204);
      res.end();
      return;
    }
    const file = files[path];
    if (!file || req.method !== 'GET') {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('not found');
      return;
    }
    res.writeHead(200, {
      'Content-Type': file[1],
      'Cache-Control': 'no-store',
      // The app's own policy: scripts from itself only, fetch to the OP.
      'Content-Security-Policy': `default-src 'self'; connect-src 'self' ${config.authority ?? ''}`,
    });
    res.end(readFileSync(file[0]));
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    configure(next) {
      config = next;
    },
    close: () => new Promise((ok) => { server.closeAllConnections(); server.close(ok); }),
  };
}

/// Starts the reference OP (panva's oidc-provider, interop/node/
/// reference-op.mjs, with interop/node's own npm install) with `accounts`
/// ({login: password}); resolves once it prints READY. Clients are created
/// with `register(metadata)` (RFC 7591 dynamic registration).
export async function startReferenceOp(accounts) {
  const { existsSync } = await import('node:fs');
  const { randomBytes } = await import('node:crypto');
  const nodeDir = join(repo, 'interop', 'node');
  if (!existsSync(join(nodeDir, 'node_modules', 'oidc-provider'))) {
    throw new Error('the reference OP needs interop/node installed: (cd interop/node && npm ci)');
  }
  const registrationToken = randomBytes(24).toString('base64url');
  const config = { port: await freePort(), accounts, registration_token: registrationToken };
  let log = '';
  const child = spawn(process.execPath, [join(nodeDir, 'reference-op.mjs'), JSON.stringify(config)], {
    cwd: nodeDir,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise((ok) => child.once('exit', (code) => ok(code)));
  const issuer = await new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`reference OP not ready within 20 s:\n${log}`)), 20_000);
    child.stdout.on('data', (d) => {
      log += d;
      const m = /^READY (\S+)$/m.exec(log);
      if (m) {
        clearTimeout(timer);
        ok(m[1]);
      }
    });
    child.stderr.on('data', (d) => (log += d));
    exited.then((code) => fail(new Error(`reference OP exited with ${code}:\n${log}`)));
  });
  return {
    url: issuer,
    issuer,
    log: () => log,
    async register(metadata) {
      const discovery = await (await fetch(`${issuer}/.well-known/openid-configuration`)).json();
      const r = await fetch(discovery.registration_endpoint, {
        method: 'POST',
        headers: { authorization: `Bearer ${registrationToken}`, 'content-type': 'application/json' },
        body: JSON.stringify(metadata),
      });
      const body = await r.json();
      if (r.status !== 201) throw new Error(`registration: ${r.status} ${JSON.stringify(body)}`);
      return body;
    },
    async stop() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}
