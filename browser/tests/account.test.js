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

  // A second device signs in; the first sees it after a reload, named
  // from its user agent, and ends it.
  const otherAgent =
    'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36';
  const other = await browser.newContext({ userAgent: otherAgent });
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

  const otherRow = page.locator('#sessions tbody tr', { hasText: 'Chrome on Android' });
  // The name, with the raw user agent on hover.
  assert.equal(await otherRow.locator('td.device').innerText(), 'Chrome on Android');
  assert.equal(await otherRow.locator('td.device').getAttribute('title'), otherAgent);
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

test('opened at localhost for an issuer of 127.0.0.1, the page moves to the issuer and stays signed in across a reload', async () => {
  await warden.register('dave');
  const context = await browser.newContext();
  const page = await context.newPage();
  // Same server, other name: the issuer is http://127.0.0.1:PORT, the
  // README's curl lines say localhost. The browser would keep the cookie
  // for the wrong host, and warden spends it only from its own origin.
  const elsewhere = warden.url.replace('127.0.0.1', 'localhost');
  const first = await page.goto(`${elsewhere}/account`);
  assert.equal((await first.request().redirectedFrom().response()).status(), 307);
  assert.equal(page.url(), `${warden.url}/account`);
  await signedOut(page);
  await signIn(page, 'dave', PASSWORD);
  await signedInAs(page, 'dave');
  assert.ok(await refreshCookie(context), 'the refresh cookie is set, for the issuer');
  // A reload, and opening the localhost address again, keep the session.
  await page.reload();
  await signedInAs(page, 'dave');
  await page.goto(`${elsewhere}/account?again=1`);
  assert.equal(page.url(), `${warden.url}/account?again=1`);
  await signedInAs(page, 'dave');
  await screenshot(page, 'account-localhost-redirected');
  await context.close();
});

test('opened at an address that is not the issuer and not one of its loopback names, the page names the address to use', async () => {
  // An issuer the browser does not reach here (a public name, say), and
  // the page opened at the listening address: not redirected, since only
  // loopback names of the issuer's own host are.
  const issuer = 'http://warden.test:8000';
  const other = await startWarden({ WARDEN_ISSUER: issuer });
  try {
    await other.register('erin');
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${other.url}/account`);
    assert.equal(page.url(), `${other.url}/account`);
    await signedOut(page);
    await signIn(page, 'erin', PASSWORD);
    const text = await message(page, 'error', 'own address');
    assert.equal(
      text,
      `This page is at ${other.url}, but warden's sign-in cookie works only at warden's own address (its issuer): open ${issuer}/account`,
    );
    // warden's own reason, for whoever looks closer.
    assert.match(await page.locator('#message').getAttribute('title'), /Cookie mode \(cookie=true\) is accepted only from warden's own origin/);
    const link = page.locator('#message.error a');
    assert.equal(await link.getAttribute('href'), `${issuer}/account`);
    assert.equal(await link.innerText(), `${issuer}/account`);
    assert.equal(await refreshCookie(context), undefined, 'no refresh cookie was set');
    await screenshot(page, 'account-other-origin');
    await context.close();
  } finally {
    await other.stop();
  }
});

test('at 390 px wide (a phone) the account page with several long sessions does not scroll sideways', async () => {
  await warden.register('frank');
  // Five more devices with long user agents, signed in by the API.
  const agents = [
    'Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1 ExtraLongTokenWithoutSpaces/1234567890abcdefghijklmnopqrstuvwxyz',
    'Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0',
    'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0',
    'curl/8.11.0',
    `${'Averyveryveryverylongproductnamewithoutanybreaks'.repeat(4)}/1.0`,
  ];
  for (const agent of agents) {
    const r = await fetch(`${warden.url}/token`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded', 'User-Agent': agent },
      body: new URLSearchParams({ username: 'frank', password: PASSWORD }),
    });
    assert.equal(r.status, 200);
  }
  const context = await browser.newContext({
    viewport: { width: 390, height: 844 },
    deviceScaleFactor: 3,
    isMobile: true,
    hasTouch: true,
    userAgent: agents[0],
  });
  const { page, foreign } = await openAccount(context);
  await signedOut(page);
  await signIn(page, 'frank', PASSWORD);
  await signedInAs(page, 'frank');
  const rows = page.locator('#sessions tbody tr');
  await page.locator(`#sessions tbody tr:nth-child(${agents.length + 1})`).waitFor();
  assert.equal(await rows.count(), agents.length + 1);

  const widths = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth,
    client: document.documentElement.clientWidth,
    body: document.body.scrollWidth,
  }));
  assert.equal(widths.client, 390);
  assert.ok(widths.scroll <= widths.client, `the page scrolls sideways: ${JSON.stringify(widths)}`);
  assert.ok(widths.body <= widths.client, `the body is wider than the screen: ${JSON.stringify(widths)}`);
  // Every session card, and each of its lines, fits on the screen.
  for (const box of await rows.evaluateAll((trs) => trs.map((tr) => tr.getBoundingClientRect().toJSON()))) {
    assert.ok(box.left >= 0 && box.right <= 390, `a session sticks out: ${JSON.stringify(box)}`);
  }
  // Names, not raw user agents; the labels of the stacked layout show.
  const devices = await page.locator('#sessions td.device').allInnerTexts();
  for (const name of ['Safari on iPhone', 'Firefox on Linux', 'Edge on Windows', 'curl']) {
    assert.ok(devices.some((d) => d.includes(name)), `${name} missing from ${JSON.stringify(devices)}`);
  }
  const current = page.locator('#sessions tr.current td.device');
  assert.equal(await current.innerText(), 'Safari on iPhone');
  assert.equal(await current.evaluate((td) => getComputedStyle(td, '::before').content), '"Device"');
  assert.equal(await page.locator('#sessions thead').isVisible(), false);
  await screenshot(page, 'account-390px');
  // Ending a session works from the card.
  await page.locator('#sessions tbody tr', { hasText: 'curl' }).locator('button.end-session').click();
  await message(page, 'ok', 'Session ended.');
  assert.equal(await rows.count(), agents.length);
  assert.deepEqual(foreign, [], 'the page requested another origin');
  await context.close();
});
