// The authorization servers the openid-client tests run against (the twin of
// interop/oauth/providers.py): each starts itself on a free loopback port, has
// the user `alice`, creates clients on demand and knows what its login form
// calls the username field.
// - warden: the real binary (WARDEN_BIN, default ../../target/debug/warden):
//   `warden migrate`, `warden users create`, `warden serve` on a fresh SQLite
//   file with cheap argon2; clients with `warden clients create`.
// - oidc-provider: reference-op.mjs beside this folder; clients through
//   dynamic registration (RFC 7591).
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const NODE_DIR = resolve(HERE, '..');
const REPO = resolve(NODE_DIR, '..', '..');
export const METADATA_PATH = '/.well-known/oauth-authorization-server';
export const USERNAME = 'alice';
export const PASSWORD = 'correct horse battery';
export const FULL_NAME = 'Alice Liddell';
export const EMAIL = `${USERNAME}@example.com`;
export const OPENID_CONFIGURATION_PATH = '/.well-known/openid-configuration';
// What the OpenID relying-party tests ask for.
export const OIDC_SCOPE = 'openid profile email offline_access';
const STARTUP_TIMEOUT_MS = 20_000;

export async function freePort() {
  const server = createServer();
  await new Promise((ok, fail) => server.once('error', fail).listen(0, '127.0.0.1', ok));
  const { port } = server.address();
  await new Promise((ok) => server.close(ok));
  return port;
}

/** A loopback redirect URI (RFC 8252 §7.3) on which nothing listens. */
export async function callbackUri() {
  return `http://127.0.0.1:${await freePort()}/callback`;
}

class Provider {
  constructor(name, usernameField) {
    this.name = name;
    this.usernameField = usernameField;
    this.username = USERNAME;
    this.password = PASSWORD;
    this.output = '';
    this.workdir = mkdtempSync(join(tmpdir(), `interop-${name}-`));
  }

  async spawn(argv, env, cwd) {
    this.port ??= await freePort();
    this.base = `http://127.0.0.1:${this.port}`;
    this.metadataUrl = this.base + METADATA_PATH;
    this.proc = spawn(argv[0], argv.slice(1), { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    for (const stream of [this.proc.stdout, this.proc.stderr]) {
      stream.on('data', (chunk) => { this.output += chunk; });
    }
    this.exited = new Promise((ok) => this.proc.once('exit', (code, signal) => ok({ code, signal })));
    const deadline = Date.now() + STARTUP_TIMEOUT_MS;
    let last;
    while (Date.now() < deadline) {
      if (this.proc.exitCode !== null) {
        throw new Error(`${this.name} exited with ${this.proc.exitCode} during start-up:\n${this.output}`);
      }
      try {
        const r = await fetch(this.metadataUrl);
        if (r.status === 200) {
          this.metadata = await r.json();
          return;
        }
        last = `HTTP ${r.status}`;
      } catch (e) {
        last = String(e.cause ?? e);
      }
      await new Promise((ok) => setTimeout(ok, 50));
    }
    throw new Error(`${this.name} not ready after ${STARTUP_TIMEOUT_MS} ms (last: ${last}):\n${this.output}`);
  }

  async stop() {
    if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill('SIGTERM');
      const timer = setTimeout(() => this.proc.kill('SIGKILL'), 10_000);
      await this.exited;
      clearTimeout(timer);
    }
    rmSync(this.workdir, { recursive: true, force: true });
  }

  get issuer() {
    return this.metadata.issuer;
  }

  /** The OpenID Connect Discovery document, or null when it is absent (404). */
  async openidConfiguration() {
    const r = await fetch(this.base + OPENID_CONFIGURATION_PATH);
    if (r.status === 404) return null;
    if (r.status !== 200) throw new Error(`${OPENID_CONFIGURATION_PATH}: HTTP ${r.status} ${await r.text()}`);
    return r.json();
  }
}

/** A post-logout redirect URI: loopback, nothing listens there. */
async function signedOutUri() {
  return (await callbackUri()).replace('/callback', '/signed-out');
}

export class Warden extends Provider {
  constructor(binary = process.env.WARDEN_BIN ?? join(REPO, 'target', 'debug', 'warden')) {
    super('warden', 'username');
    this.binary = resolve(binary);
  }

  async cli(args, input) {
    const child = execFile(this.binary, args, { cwd: this.workdir, env: this.env, timeout: 60_000 });
    if (input !== undefined) child.stdin.end(input);
    else child.stdin.end();
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const code = await new Promise((ok) => child.once('close', ok));
    if (code !== 0) throw new Error(`warden ${args.join(' ')} exited with ${code}:\n${stdout}${stderr}`);
    return stdout;
  }

  async start() {
    if (!existsSync(this.binary)) {
      throw new Error(`warden binary not found at ${this.binary} (run \`cargo build\` or set WARDEN_BIN)`);
    }
    this.port = await freePort();
    this.env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('WARDEN_')));
    Object.assign(this.env, {
      WARDEN_BIND: `127.0.0.1:${this.port}`,
      WARDEN_DATABASE_URL: `sqlite://${this.workdir}/warden.db`,
      WARDEN_ARGON2_MEMORY_KIB: '256',
      WARDEN_ARGON2_ITERATIONS: '1',
    });
    await this.cli(['migrate']);
    await this.cli(['users', 'create', '--username', USERNAME, '--email', EMAIL, '--full-name', FULL_NAME, '--password-stdin'], `${PASSWORD}\n`);
    await this.spawn([this.binary, 'serve'], this.env, this.workdir);
  }

  hasCodeFlow() {
    return Boolean(this.metadata.authorization_endpoint);
  }

  static clientJson(stdout) {
    // The contract: the client as JSON (one object) on standard output;
    // tolerate a line of text before or after it.
    const start = stdout.indexOf('{');
    for (let end = stdout.lastIndexOf('}'); end > start; end = stdout.lastIndexOf('}', end - 1)) {
      try {
        return JSON.parse(stdout.slice(start, end + 1));
      } catch {
        // a '}' inside the trailing text: try the previous one
      }
    }
    throw new Error(`no client JSON in the output of warden clients create:\n${stdout}`);
  }

  async createClient({ authMethod = 'client_secret_basic', scope = 'me', logout = false } = {}) {
    const redirectUri = await callbackUri();
    const args = ['clients', 'create', '--name', `interop ${authMethod}`, '--redirect-uri', redirectUri,
      ...scope.split(' ').flatMap((s) => ['--scope', s]), '--grant', 'authorization_code', '--grant', 'refresh_token'];
    const postLogoutRedirectUri = logout ? await signedOutUri() : undefined;
    if (postLogoutRedirectUri) args.push('--post-logout-redirect-uri', postLogoutRedirectUri);
    if (authMethod === 'none') args.push('--public');
    const c = Warden.clientJson(await this.cli(args));
    return { clientId: c.client_id, clientSecret: c.client_secret, redirectUri, authMethod, scope, postLogoutRedirectUri };
  }

  /** A relying party: the OpenID scopes, RS256 id tokens (warden's default), a post-logout redirect URI. */
  async createOidcClient({ authMethod = 'client_secret_basic' } = {}) {
    return this.createClient({ authMethod, scope: OIDC_SCOPE, logout: true });
  }

  async createServiceClient({ scope = 'tokens:introspect' } = {}) {
    // The contract's CLI wants at least one --redirect-uri for every client;
    // a service client never uses it.
    const args = ['clients', 'create', '--name', 'interop service', '--redirect-uri', await callbackUri(),
      '--scope', scope, '--grant', 'client_credentials'];
    const c = Warden.clientJson(await this.cli(args));
    return { clientId: c.client_id, clientSecret: c.client_secret, authMethod: 'client_secret_basic', scope };
  }
}

export class ReferenceOP extends Provider {
  constructor() {
    // devInteractions' login form names the username field `login`.
    super('oidc-provider', 'login');
    this.registrationToken = randomBytes(24).toString('base64url');
  }

  async start() {
    this.port = await freePort();
    const config = { port: this.port, accounts: { [USERNAME]: PASSWORD },
      names: { [USERNAME]: FULL_NAME }, registration_token: this.registrationToken };
    await this.spawn([process.execPath, join(NODE_DIR, 'reference-op.mjs'), JSON.stringify(config)], process.env, NODE_DIR);
  }

  async register(metadata) {
    const r = await fetch(this.metadata.registration_endpoint, {
      method: 'POST',
      headers: { authorization: `Bearer ${this.registrationToken}`, 'content-type': 'application/json' },
      body: JSON.stringify(metadata),
    });
    const body = await r.json();
    if (r.status !== 201) throw new Error(`registration: ${r.status} ${JSON.stringify(body)}`);
    return body;
  }

  async createClient({ authMethod = 'client_secret_basic', scope = 'me' } = {}) {
    const redirectUri = await callbackUri();
    const c = await this.register({
      client_name: `interop ${authMethod}`,
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: authMethod,
      scope,
    });
    return { clientId: c.client_id, clientSecret: c.client_secret, redirectUri, authMethod, scope };
  }

  async createOidcClient({ authMethod = 'client_secret_basic' } = {}) {
    const redirectUri = await callbackUri();
    const postLogoutRedirectUri = await signedOutUri();
    const c = await this.register({
      client_name: `interop rp ${authMethod}`,
      redirect_uris: [redirectUri],
      post_logout_redirect_uris: [postLogoutRedirectUri],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: authMethod,
      id_token_signed_response_alg: 'RS256',
      scope: OIDC_SCOPE,
    });
    return {
      clientId: c.client_id, clientSecret: c.client_secret, redirectUri, authMethod, scope: OIDC_SCOPE, postLogoutRedirectUri,
    };
  }

  async createServiceClient({ scope = 'tokens:introspect' } = {}) {
    const c = await this.register({
      client_name: 'interop service',
      redirect_uris: [],
      grant_types: ['client_credentials'],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_basic',
      scope,
    });
    return { clientId: c.client_id, clientSecret: c.client_secret, authMethod: 'client_secret_basic', scope };
  }
}
