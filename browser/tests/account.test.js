// The /account page in headless Chromium: register, sign in, reload and
// stay signed in (cookie refresh), sessions, sign out, error messages.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { PASSWORD, launchBrowser, onlyOrigin, screenshot, startWarden } from '../harness.js';

let warden;
let browser;

before(async () => {
  warden = await startWarden();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await warden?.stop();
});

async function openAccount(context) {
  const page = await context.newPage();
  const foreign = onlyOrigin(page, warden.url);
  await page.goto(`${warden.url}/account`);
  return { page, foreign };
}

/// Waits for the page to settle signed in as `username`.
async function signedInAs(page, username) {
  await page.locator('#whoami', { hasText: `Signed in as ${username}` }).waitFor();
  await page.locator('#sessions tbody tr').first().waitFor();
}

async function signedOut(page) {
  await page.locator('#signin-form').waitFor();
  assert.equal(await page.locator('#signed-in').isVisible(), false);
}

async function message(page, kind, text) {
  const m = page.locator(`#message.${kind}`, { hasText: text });
  await m.waitFor();
  return (await m.innerText()).trim();
}

async function signIn(page, username, password) {
  await page.locator('#signin-username').fill(username);
  await page.locator('#signin-password').fill(password);
  await page.locator('#signin-form button[type=submit]').click();
}

async function refreshCookie(context) {
  return (await context.cookies()).find((c) => c.name === 'warden_refresh');
}

test('register, stay signed in across a reload, end another session, sign out', async () => {
  const context = await browser.newContext();
  const { page, foreign } = await openAccount(context);
  await signedOut(page);

  // Register: the page creates the account and signs in.
  await page.locator('#register-username').fill('alice');
  await page.locator('#register-email').fill('alice@example.com');
  await page.locator('#register-full-name').fill('Alice Liddell');
  await page.locator('#register-password').fill(PASSWORD);
  await page.locator('#register-form button[type=submit]').click();
  await signedInAs(page, 'alice');
  await message(page, 'ok', 'Account created');
  assert.equal(await page.locator('#roles').innerText(), 'user');

  // The refresh token is an HttpOnly cookie for /token only; nothing is in
  // Web Storage and scripts see no cookie at all.
  const cookie = await refreshCookie(context);
  assert.ok(cookie, 'the refresh cookie is set');
  assert.equal(cookie.httpOnly, true);
  assert.equal(cookie.sameSite, 'Strict');
  assert.equal(cookie.path, '/token');
  assert.equal(cookie.secure, false, 'plain HTTP on loopback');
  assert.deepEqual(
    await page.evaluate(() => [localStorage.length, sessionStorage.length, document.cookie]),
    [0, 0, ''],
  );

  // One session, this one.
  let rows = page.locator('#sessions tbody tr');
  assert.equal(await rows.count(), 1);
  assert.match(await rows.first().innerText(), /this device/);

  // Reload: signed in again through a cookie refresh, same session.
  const [refresh] = await Promise.all([
    page.waitForResponse((r) => r.url() === `${warden.url}/token` && r.request().method() === 'POST'),
    page.reload(),
  ]);
  assert.equal(refresh.status(), 200);
  await signedInAs(page, 'alice');
  assert.equal(await rows.count(), 1);
  assert.match(await page.locator('#sessions tr.current').innerText(), /this device/);
  assert.notEqual((await refreshCookie(context)).value, cookie.value, 'the cookie rotated');

  // A second device signs in; the first sees it after a reload and ends it.
  const other = await browser.newContext({ userAgent: 'Second device (test)' });
  const { page: page2 } = await openAccount(other);
  await signedOut(page2);
  await signIn(page2, 'alice', PASSWORD);
  await signedInAs(page2, 'alice');

  await page.reload();
  await signedInAs(page, 'alice');
  await page.locator('#sessions tbody tr:nth-child(2)').waitFor();
  assert.equal(await rows.count(), 2);
  assert.equal(await page.locator('#sessions tr.current').count(), 1);
  await screenshot(page, 'account-signed-in');

  const otherRow = page.locator('#sessions tbody tr', { hasText: 'Second device' });
  await otherRow.locator('button.end-session').click();
  await message(page, 'ok', 'Session ended.');
  await otherRow.waitFor({ state: 'detached' });
  assert.equal(await rows.count(), 1);

  // The ended device is signed out on its next load.
  await page2.reload();
  await signedOut(page2);
  await other.close();

  // Sign out: the cookie is cleared, and a reload stays signed out.
  await page.locator('#signout').click();
  await signedOut(page);
  await message(page, 'ok', 'Signed out.');
  assert.equal(await refreshCookie(context), undefined, 'logout cleared the cookie');
  await page.reload();
  await signedOut(page);
  await screenshot(page, 'account-signed-out');

  assert.deepEqual(foreign, [], 'the page requested another origin');
  await context.close();
});

test('a wrong password and a weak new password show readable messages; password change; sign out everywhere', async () => {
  await warden.register('bob');
  const context = await browser.newContext();
  const { page } = await openAccount(context);
  await signedOut(page);

  await signIn(page, 'bob', 'not the password');
  assert.equal(await message(page, 'error', 'Incorrect username or password'), 'Incorrect username or password');
  await screenshot(page, 'account-wrong-password');

  await signIn(page, 'bob', PASSWORD);
  await signedInAs(page, 'bob');

  // A refused new password: the 422 as a sentence.
  await page.locator('#current-password').fill(PASSWORD);
  await page.locator('#new-password').fill('password');
  await page.locator('#password-form button[type=submit]').click();
  const weak = await message(page, 'error', 'New password');
  assert.match(weak, /^New password: This password is too common/);
  await screenshot(page, 'account-weak-password');

  // A real change keeps this browser signed in (cookie mode), also after a
  // reload.
  await page.locator('#current-password').fill(PASSWORD);
  await page.locator('#new-password').fill('an entirely new passphrase');
  await page.locator('#password-form button[type=submit]').click();
  await message(page, 'ok', 'Password changed');
  await page.reload();
  await signedInAs(page, 'bob');

  // Sign out everywhere: this browser too, also after a reload.
  await page.locator('#signout-all').click();
  await signedOut(page);
  await message(page, 'ok', 'Signed out everywhere.');
  await page.reload();
  await signedOut(page);
  await context.close();
});

test('too many failed sign-ins show the 429 and how long to wait', async () => {
  const throttled = await startWarden({ WARDEN_THROTTLE_PER_PAIR: '1' });
  try {
    await throttled.register('carol');
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${throttled.url}/account`);
    await signedOut(page);
    await signIn(page, 'carol', 'wrong guess one');
    await message(page, 'error', 'Incorrect username or password');
    const [r] = await Promise.all([
      page.waitForResponse((res) => res.url().startsWith(`${throttled.url}/token`)),
      signIn(page, 'carol', 'wrong guess two'),
    ]);
    assert.equal(r.status(), 429);
    const text = await message(page, 'error', 'Too many');
    assert.match(text, /try again in \d+ seconds/);
    await screenshot(page, 'account-throttled');
    await context.close();
  } finally {
    await throttled.stop();
  }
});

test('opened at an address other than the issuer, signing in is refused and says why (login CSRF)', async () => {
  await warden.register('dave');
  const context = await browser.newContext();
  const page = await context.newPage();
  // Same server, other origin: the issuer is http://127.0.0.1:PORT. The
  // page is warden's own, but to warden's Origin rule any other origin is
  // a foreign page, and a foreign page must not get a refresh cookie set.
  const elsewhere = warden.url.replace('127.0.0.1', 'localhost');
  await page.goto(`${elsewhere}/account`);
  await signedOut(page);
  await signIn(page, 'dave', PASSWORD);
  const text = await message(page, 'error', 'origin');
  assert.match(text, /Cookie mode \(cookie=true\) is accepted only from warden's own origin/);
  await signedOut(page);
  assert.equal(await refreshCookie(context), undefined, 'no refresh cookie was set');
  await screenshot(page, 'account-other-origin');
  await context.close();
});
