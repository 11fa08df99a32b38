// WARDEN_CORS_ORIGINS in a real browser: a single-page app on a listed
// origin calls warden with a bearer token (preflighted) and refreshes with
// the cookie; an app on an unlisted origin can do neither.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { PASSWORD, launchBrowser, screenshot, startWarden } from '../harness.js';

let listed;
let unlisted;
let warden;
let browser;

/// A blank page on its own loopback port: another origin (same site, as
/// ports do not make sites, so SameSite=Strict cookies still flow).
function appOrigin() {
  return new Promise((ok) => {
    const server = createServer((req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      res.end('<!doctype html><title>another app</title><h1>another app</h1>');
    });
    server.listen(0, '127.0.0.1', () => {
      ok({ url: `http://127.0.0.1:${server.address().port}`, close: () => server.close() });
    });
  });
}

before(async () => {
  listed = await appOrigin();
  unlisted = await appOrigin();
  warden = await startWarden({ WARDEN_CORS_ORIGINS: listed.url });
  await warden.register('erin');
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await warden?.stop();
  listed?.close();
  unlisted?.close();
});

/// In a page of `origin`: sign in with cookie mode, call /users/me with the
/// token, then refresh with the cookie only. Each step's outcome, or the
/// error the browser raised (a CORS refusal is a TypeError).
async function runApp(origin) {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(origin);
  const outcome = await page.evaluate(
    async ({ warden, password }) => {
      const step = async (f) => {
        try {
          return await f();
        } catch (e) {
          return { error: e.name };
        }
      };
      const form = (fields) => ({
        method: 'POST',
        credentials: 'include',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams(fields),
      });
      const login = await step(async () => {
        const r = await fetch(`${warden}/token?cookie=true`, form({ username: 'erin', password }));
        return { status: r.status, body: await r.json() };
      });
      const me = await step(async () => {
        const r = await fetch(`${warden}/users/me`, {
          headers: { Authorization: `Bearer ${login.body.access_token}` },
        });
        return { status: r.status, body: await r.json() };
      });
      const refresh = await step(async () => {
        const r = await fetch(`${warden}/token`, form({ grant_type: 'refresh_token' }));
        return { status: r.status, body: await r.json() };
      });
      return { login, me, refresh };
    },
    { warden: warden.url, password: PASSWORD },
  );
  const cookie = (await context.cookies()).find((c) => c.name === 'warden_refresh');
  return { page, context, outcome, cookie };
}

test('an app on a listed origin signs in, calls /users/me and refreshes with the cookie', async () => {
  const { page, context, outcome, cookie } = await runApp(listed.url);
  assert.equal(outcome.login.status, 200);
  assert.equal(outcome.login.body.refresh_token, undefined, 'cookie mode: not in the body');
  assert.ok(cookie, 'the browser stored the refresh cookie for warden');
  assert.equal(cookie.httpOnly, true);
  assert.equal(outcome.me.status, 200);
  assert.equal(outcome.me.body.username, 'erin');
  assert.equal(outcome.refresh.status, 200);
  assert.ok(outcome.refresh.body.access_token);
  await screenshot(page, 'cors-listed-origin');
  await context.close();
});

test('an app on an unlisted origin can read nothing, and its cookie refresh is refused by warden', async () => {
  const { context, outcome } = await runApp(unlisted.url);
  // Without CORS headers the browser hides every response from the script.
  assert.deepEqual(outcome.login, { error: 'TypeError' });
  assert.deepEqual(outcome.refresh, { error: 'TypeError' });
  // The browser hid only the response: warden itself refused the cookie
  // login by its Origin (login CSRF), so no cookie was set.
  assert.ok(!(await context.cookies()).some((c) => c.name === 'warden_refresh'), 'no cookie from a foreign login');

  // A victim who signed in on warden's own origin earlier holds a cookie.
  const own = await context.newPage();
  await own.goto(`${warden.url}/healthz`);
  const status = await own.evaluate(async (password) => {
    const r = await fetch('/token?cookie=true', {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ username: 'erin', password }),
    });
    return r.status;
  }, PASSWORD);
  assert.equal(status, 200);
  await own.close();
  const cookies = await context.cookies();
  assert.ok(cookies.some((c) => c.name === 'warden_refresh'), 'the browser holds a refresh cookie');

  // A form POST needs no preflight: a page of the unlisted origin can make
  // the browser send a refresh, cookie included (the same site, as ports
  // do not make sites). warden itself refuses it by its Origin.
  const page = await context.newPage();
  await page.goto(unlisted.url);
  await Promise.all([
    page.waitForURL(`${warden.url}/token`),
    page.evaluate((w) => {
      const form = document.createElement('form');
      form.method = 'POST';
      form.action = `${w}/token`;
      const field = document.createElement('input');
      field.name = 'grant_type';
      field.value = 'refresh_token';
      form.append(field);
      document.body.append(form);
      form.submit();
    }, warden.url),
  ]);
  const shown = JSON.parse(await page.locator('body').innerText());
  assert.equal(shown.error, 'invalid_grant');
  assert.match(shown.detail, /accepted only from warden's own origin/, 'the cookie was sent and refused');
  await screenshot(page, 'cors-unlisted-form-refresh');
  await context.close();
});
