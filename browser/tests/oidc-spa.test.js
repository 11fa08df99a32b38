// A single-page app signs in with oidc-client-ts (npm, the package's own
// browser build) as a public OpenID Connect client, in headless Chromium:
// authorization code + PKCE through the OP's hosted pages, the token and
// userinfo calls made by the page itself (cross-origin: CORS must answer),
// a silent renew by refresh token (the refresh grant from the browser), and
// RP-initiated logout (revoking the refresh token first, then
// end_session_endpoint with id_token_hint and post_logout_redirect_uri),
// after which a new sign-in asks for the password again.
//
// The same page and the same steps run against warden and against the
// reference OP, panva's certified oidc-provider (interop/node/
// reference-op.mjs), with equivalent public clients; only the authority and
// the client differ. Where the two may rightly differ, the OP says so:
// - the login form's username field (`username` at warden, `login` at
//   oidc-provider's devInteractions) and the consent form;
// - the logout page: with a valid id_token_hint warden shows none (the
//   contract), oidc-provider always asks "Do you want to sign-out".

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { PASSWORD, launchBrowser, screenshot, startReferenceOp, startSpa, startWarden } from '../harness.js';

const SCOPE = 'openid profile email offline_access';

let browser;

before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
});

function decodeJwt(jwt) {
  return JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString('utf8'));
}

/// Records what the page does: every response from the OP's origin (method,
/// path, status, the request's Origin header and body), console errors and
/// failed requests.
function watch(page, opOrigin) {
  const seen = { responses: [], console: [], failed: [], navigations: [] };
  seen.pending = [];
  page.on('response', (res) => {
    const req = res.request();
    const u = new URL(req.url());
    if (u.origin !== opOrigin) return;
    // (The Origin header is among the headers the network sent, which
    // playwright reads asynchronously.)
    seen.pending.push(
      req.allHeaders().then((headers) => {
        seen.responses.push({
          method: req.method(),
          path: u.pathname,
          status: res.status(),
          origin: headers.origin,
          body: req.postData() ?? '',
          type: req.resourceType(),
        });
      }),
    );
  });
  page.on('console', (msg) => {
    if (msg.type() === 'error' || /CORS|Access-Control/i.test(msg.text())) {
      seen.console.push(`${page.url()}: ${msg.text()} (${msg.location().url})`);
    }
  });
  page.on('requestfailed', (req) => {
    seen.failed.push(`${req.method()} ${req.url()}: ${req.failure()?.errorText}`);
  });
  page.on('framenavigated', (frame) => {
    if (frame === page.mainFrame()) seen.navigations.push(frame.url());
  });
  return seen;
}

/// Console errors and failed requests of the SPA's own pages (the OP's
/// pages may try to load outside fonts, which this machine cannot reach).
function spaProblems(seen, spaUrl) {
  return {
    console: seen.console.filter((line) => line.startsWith(spaUrl) || /CORS|Access-Control/i.test(line)),
    failed: seen.failed.filter((line) => !/fonts\.googleapis|fonts\.gstatic/.test(line)),
  };
}

/// What went by, for a failure's message.
function diagnose(seen) {
  const calls = seen.responses.map((r) => `  ${r.method} ${r.path} -> ${r.status} (${r.type}, Origin: ${r.origin ?? '-'})`);
  return [
    'responses from the OP:', ...calls,
    'console errors:', ...seen.console.map((l) => `  ${l}`),
    'failed requests:', ...seen.failed.map((l) => `  ${l}`),
  ].join('\n');
}

/// The app's state once its start-up script has run.
async function spaState(page) {
  await page.waitForFunction(() => window.spa && window.spa.ready);
  return page.evaluate(async () => {
    const user = await window.spa.userManager.getUser();
    return {
      status: document.getElementById('status').textContent,
      error: window.spa.lastError,
      signedOut: Boolean(window.spa.signedOut),
      user: user && {
        profile: user.profile,
        id_token: user.id_token,
        access_token: user.access_token,
        refresh_token: user.refresh_token,
        scope: user.scope,
      },
    };
  });
}

/// From the OP's first page back to the SPA: the login form (when
/// `password` is wanted, else asserting there is none), then consent when
/// the OP asks. Returns whether a login form was shown.
async function throughHostedPages(page, op, spaUrl) {
  let loginShown = false;
  await page.waitForURL((u) => u.origin === op.url);
  for (let step = 0; step < 6; step += 1) {
    await page.waitForURL((u) => u.origin === spaUrl || u.origin === op.url);
    await page.waitForLoadState();
    if (new URL(page.url()).origin === spaUrl) return loginShown;
    const password = page.locator('input[name=password]');
    if (await password.count()) {
      loginShown = true;
      await screenshot(page, `oidc-spa-${op.name}-login`);
      await page.locator(`input[name=${op.usernameField}]`).fill('alice');
      await password.fill(PASSWORD);
      await Promise.all([page.waitForNavigation(), page.locator('form button[type=submit]').first().click()]);
      continue;
    }
    const allow = page.locator(op.consentButton);
    if (await allow.count()) {
      await screenshot(page, `oidc-spa-${op.name}-consent`);
      await Promise.all([page.waitForNavigation(), allow.first().click()]);
      continue;
    }
    assert.fail(`unexpected page at the OP: ${page.url()}\n${(await page.locator('body').innerText()).slice(0, 500)}`);
  }
  assert.fail(`still at the OP after 6 pages: ${page.url()}`);
}

/// Runs the whole flow against `op`: { name, url (issuer), usernameField,
/// consentButton, logoutPage (a locator of its confirm button, or null when
/// none may be shown), clientId, sub (the user's expected sub), spa }.
async function signInRenewSignOut(op) {
  const { spa } = op;
  const context = await browser.newContext();
  const page = await context.newPage();
  const seen = watch(page, op.url);

  // Signed out at first.
  await page.goto(spa.url);
  let state = await spaState(page);
  assert.equal(state.status, 'signed out');
  assert.equal(state.user, null);

  // signinRedirect: discovery, then the browser goes to the authorization
  // endpoint; password and consent at the OP; back at /callback the app
  // exchanges the code (POST /token) and loads /userinfo.
  await page.locator('#signin').click();
  const loginShown = await throughHostedPages(page, op, spa.url);
  assert.ok(loginShown, 'the first sign-in asks for the password');
  state = await spaState(page);
  assert.equal(state.error, null, `the app reports an error: ${state.error}\n${diagnose(seen)}`);
  assert.equal(state.status, 'signed in');
  await screenshot(page, `oidc-spa-${op.name}-signed-in`);
  const first = state.user;
  assert.ok(first.id_token, 'an id token');
  assert.ok(first.refresh_token, 'a refresh token (offline_access, grant refresh_token)');
  const idToken = decodeJwt(first.id_token);
  assert.equal(idToken.iss, op.url);
  assert.equal(idToken.aud, op.clientId);
  assert.equal(idToken.sub, op.sub);
  assert.equal(idToken.preferred_username, 'alice', 'preferred_username in the id token (scope profile)');
  // getUser(): the id token's claims merged with /userinfo's.
  assert.equal(first.profile.sub, op.sub);
  assert.equal(first.profile.preferred_username, 'alice');
  assert.equal(first.profile.email, 'alice@example.com', 'email (scope email, from /userinfo)');
  assert.match(await page.locator('#profile').innerText(), /"preferred_username": "alice"/);

  await Promise.all(seen.pending);
  const calls = (method, path) => seen.responses.filter((r) => r.method === method && r.path === path);
  const discovery = calls('GET', '/.well-known/openid-configuration');
  assert.ok(discovery.length >= 1, 'the page fetched discovery');
  // (A discovery answer the browser took from its HTTP cache shows no
  // Origin header: warden lets discovery be cached.)
  assert.ok(discovery.every((r) => r.status === 200), JSON.stringify(discovery));
  assert.ok(discovery.some((r) => r.origin === spa.url), JSON.stringify(discovery));
  const metadata = await (await fetch(`${op.url}/.well-known/openid-configuration`)).json();
  const endpoint = (name) => new URL(metadata[name]).pathname;
  const tokenCalls = calls('POST', endpoint('token_endpoint'));
  const codeExchange = tokenCalls.filter((r) => /grant_type=authorization_code/.test(r.body));
  assert.equal(codeExchange.length, 1, JSON.stringify(tokenCalls));
  assert.equal(codeExchange[0].status, 200);
  assert.equal(codeExchange[0].origin, spa.url, 'the code exchange is a cross-origin call of the page');
  assert.match(codeExchange[0].body, /code_verifier=/);
  const userinfo = calls('GET', endpoint('userinfo_endpoint'));
  assert.ok(userinfo.some((r) => r.status === 200 && r.origin === spa.url), JSON.stringify(userinfo));

  // signinSilent with a refresh token: the refresh grant from the page.
  await page.locator('#renew').click();
  await page.waitForFunction(() => window.spa.renewals === 1 || window.spa.lastError);
  state = await spaState(page);
  assert.equal(state.error, null, `signinSilent: ${state.error}\n${diagnose(seen)}`);
  assert.equal(state.user.profile.sub, op.sub);
  assert.notEqual(state.user.access_token, first.access_token, 'a new access token');
  assert.notEqual(state.user.refresh_token, first.refresh_token, 'the refresh token rotated');
  await Promise.all(seen.pending);
  const refresh = calls('POST', endpoint('token_endpoint')).filter((r) => /grant_type=refresh_token/.test(r.body));
  assert.equal(refresh.length, 1, JSON.stringify(refresh));
  assert.equal(refresh[0].status, 200);
  assert.equal(refresh[0].origin, spa.url);
  // No iframe fell back to prompt=none: the refresh grant did the renewal.
  assert.equal(calls('GET', endpoint('authorization_endpoint')).filter((r) => r.type !== 'document').length, 0);
  const renewed = state.user;

  // signoutRedirect: revoke the refresh token (CORS again), then the
  // end_session_endpoint with id_token_hint and post_logout_redirect_uri.
  const beforeSignout = seen.navigations.length;
  const endSession = endpoint('end_session_endpoint');
  const toEndSession = page.waitForRequest((r) => r.isNavigationRequest() && new URL(r.url()).pathname === endSession);
  // The next page the browser shows: the OP's, or the app's again.
  const nextPage = page.waitForEvent('framenavigated', (f) => f === page.mainFrame());
  await page.locator('#signout').click();
  await toEndSession;
  let landed = new URL((await nextPage).url());
  if (landed.origin === op.url) {
    await page.waitForLoadState();
    await screenshot(page, `oidc-spa-${op.name}-logout`);
    if (!op.logoutPage) {
      await Promise.all(seen.pending);
      const answers = seen.responses.filter((r) => r.path === endSession).map((r) => `${r.method} ${r.status}`);
      assert.fail(`${op.name} showed a page at ${endSession} (${answers.join(', ')}) although the id_token_hint is valid:\n`
        + `${(await page.locator('body').innerText()).slice(0, 300)}`);
    }
    const back = page.waitForURL((u) => u.origin === spa.url);
    await page.locator(op.logoutPage).click();
    await back;
    landed = new URL(page.url());
  }
  assert.equal(landed.origin, spa.url, `after logout the browser is at ${landed}`);
  const signoutPages = seen.navigations.slice(beforeSignout).filter((u) => new URL(u).origin === op.url);
  if (!op.logoutPage) assert.deepEqual(signoutPages, [], 'no page at the OP during logout');
  state = await spaState(page);
  assert.equal(state.error, null, `signout: ${state.error}\n${diagnose(seen)}`);
  assert.equal(state.status, 'signed out');
  assert.equal(state.signedOut, true, 'back at post_logout_redirect_uri with the state');
  assert.equal(state.user, null);
  await Promise.all(seen.pending);
  const revocations = calls('POST', endpoint('revocation_endpoint'));
  assert.equal(revocations.length, 1, JSON.stringify(revocations));
  assert.equal(revocations[0].status, 200);
  assert.equal(revocations[0].origin, spa.url);
  const end = seen.responses.filter((r) => r.path === endpoint('end_session_endpoint') && r.type === 'document');
  assert.ok(end.length >= 1, 'the browser went to the end_session_endpoint');
  await screenshot(page, `oidc-spa-${op.name}-signed-out`);

  // The refresh token is dead (revoked, and its session ended).
  const reuse = await fetch(metadata.token_endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: renewed.refresh_token, client_id: op.clientId }),
  });
  assert.equal(reuse.status, 400);
  assert.equal((await reuse.json()).error, 'invalid_grant');

  // The OP's browser session is gone: signing in again asks for the password.
  await page.locator('#signin').click();
  await page.waitForURL((u) => u.origin === op.url);
  await page.waitForLoadState();
  await page.locator('input[name=password]').waitFor({ timeout: 10_000 });
  assert.equal(await page.locator(`input[name=${op.usernameField}]`).count(), 1);

  // Never a CORS error, never a failed request of the app.
  const problems = spaProblems(seen, spa.url);
  assert.deepEqual(problems.console, [], 'console errors');
  assert.deepEqual(problems.failed, [], 'failed requests');
  await context.close();
}

/// From an origin that is no redirect URI of the client, the page may read
/// discovery (a public document) but not call the token endpoint. The
/// origin is `http://localhost:PORT`: another port of 127.0.0.1 would not
/// do, as warden answers every port of a registered loopback host (a
/// loopback redirect URI matches any port, RFC 8252 §7.3) where
/// oidc-provider wants the exact origin.
async function foreignOriginRefused(op, foreign) {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(foreign.url.replace('127.0.0.1', 'localhost'));
  await page.waitForFunction(() => window.spa && window.spa.ready);
  const outcome = await page.evaluate(async ({ issuer, clientId }) => {
    const discovery = await fetch(`${issuer}/.well-known/openid-configuration`).then(
      (r) => r.json(),
      (e) => ({ error: e.name }),
    );
    const token = await fetch(discovery.token_endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: 'x', client_id: clientId }),
    }).then(
      (r) => ({ status: r.status }),
      (e) => ({ error: e.name }),
    );
    return { discovery: discovery.issuer ?? discovery, token };
  }, { issuer: op.url, clientId: op.clientId });
  assert.equal(outcome.discovery, op.url, 'discovery answers any origin');
  assert.deepEqual(outcome.token, { error: 'TypeError' }, 'the browser refuses the token response (no CORS)');
  await context.close();
}

describe('oidc-client-ts SPA against the reference OP (oidc-provider)', () => {
  const op = {
    name: 'reference',
    usernameField: 'login',
    consentButton: 'form:has(input[name=prompt][value=consent]) button[type=submit]',
    logoutPage: 'button[name=logout][value=yes]',
    sub: 'alice',
  };
  let reference;
  let foreign;

  before(async () => {
    reference = await startReferenceOp({ alice: PASSWORD });
    op.url = reference.url;
    op.spa = await startSpa();
    const client = await reference.register({
      client_name: 'SPA',
      redirect_uris: [`${op.spa.url}/callback`],
      post_logout_redirect_uris: [`${op.spa.url}/`],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      scope: SCOPE,
    });
    op.clientId = client.client_id;
    op.spa.configure({ authority: op.url, client_id: op.clientId });
    foreign = await startSpa();
    foreign.configure({ authority: op.url, client_id: op.clientId });
  });

  after(async () => {
    await op.spa?.close();
    await foreign?.close();
    await reference?.stop();
  });

  test('sign in (code + PKCE), userinfo, renew by refresh token, sign out', () => signInRenewSignOut(op));
  test('another origin may read discovery but not call /token', () => foreignOriginRefused(op, foreign));
});

describe('oidc-client-ts SPA against warden', () => {
  const op = {
    name: 'warden',
    usernameField: 'username',
    consentButton: 'button[name=decision][value=allow]',
    logoutPage: null,
  };
  let warden;
  let foreign;

  before(async () => {
    warden = await startWarden();
    op.url = warden.url;
    op.sub = (await warden.register('alice')).id;
    op.spa = await startSpa();
    // The reference client's twin.
    const client = warden.createClient([
      '--public',
      '--name', 'SPA',
      '--redirect-uri', `${op.spa.url}/callback`,
      '--post-logout-redirect-uri', `${op.spa.url}/`,
      ...SCOPE.split(' ').flatMap((s) => ['--scope', s]),
      '--grant', 'authorization_code',
      '--grant', 'refresh_token',
    ]);
    op.clientId = client.client_id;
    op.spa.configure({ authority: op.url, client_id: op.clientId });
    foreign = await startSpa();
    foreign.configure({ authority: op.url, client_id: op.clientId });
    // A client registered by the CLI reaches the running server's CORS
    // origins on its next periodic sync (the contract allows 5 s; see
    // src/app.rs): wait for that, measured, before the browser starts.
    const started = Date.now();
    for (;;) {
      const r = await fetch(`${op.url}/token`, {
        method: 'OPTIONS',
        headers: { origin: op.spa.url, 'access-control-request-method': 'POST' },
      });
      if (r.headers.get('access-control-allow-origin') === op.spa.url) break;
      if (Date.now() - started > 15_000) {
        throw new Error(`warden's /token preflight never allowed ${op.spa.url} (status ${r.status})`);
      }
      await new Promise((ok) => setTimeout(ok, 100));
    }
    console.log(`# the CLI's client reached warden's CORS origins after ${Date.now() - started} ms`);
  });

  after(async () => {
    await op.spa?.close();
    await foreign?.close();
    await warden?.stop();
  });

  test('warden serves OpenID discovery (else nothing below can run)', async () => {
    const r = await fetch(`${op.url}/.well-known/openid-configuration`);
    assert.equal(r.status, 200, 'GET /.well-known/openid-configuration (OpenID Connect is not in this warden)');
    const metadata = await r.json();
    for (const field of ['authorization_endpoint', 'token_endpoint', 'userinfo_endpoint', 'end_session_endpoint', 'revocation_endpoint']) {
      assert.ok(metadata[field], `discovery has ${field}`);
    }
  });
  test('sign in (code + PKCE), userinfo, renew by refresh token, sign out', () => signInRenewSignOut(op));
  test('another origin may read discovery but not call /token', () => foreignOriginRefused(op, foreign));
});
