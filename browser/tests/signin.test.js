// Signing in to apps through warden, in headless Chromium: two instances
// of examples/signin.rs (two registered clients) send the browser to
// warden's /authorize; the user signs in on warden's hosted login page,
// agrees on its consent page and lands back in the app. The second app
// needs no second password (single sign-on). Also: deny, a wrong password.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  PASSWORD,
  freePort,
  launchBrowser,
  screenshot,
  startSigninExample,
  startWarden,
} from '../harness.js';

let warden;
let browser;
let gradebook;
let library;

before(async () => {
  warden = await startWarden();
  browser = await launchBrowser();
  const apps = [];
  for (const name of ['Gradebook', 'Library']) {
    const port = await freePort();
    const client = warden.createClient([
      '--name',
      name,
      '--redirect-uri',
      `http://127.0.0.1:${port}/callback`,
    ]);
    apps.push(await startSigninExample(warden.url, client, port));
  }
  [gradebook, library] = apps;
  // One user per test: consent is remembered per (user, client).
  for (const user of ['alice', 'bob', 'carol']) await warden.register(user);
});

after(async () => {
  await gradebook?.stop();
  await library?.stop();
  await browser?.close();
  await warden?.stop();
});

/// The hosted login page: fields named username and password.
async function fillLogin(page, username, password) {
  await page.locator('input[name=username]').fill(username);
  await page.locator('input[name=password]').fill(password);
  await page.locator('form button[type=submit], form input[type=submit]').first().click();
}

async function decide(page, decision) {
  await page.locator(`button[name=decision][value=${decision}]`).click();
}

test('sign in through warden, then a second app without a password', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(gradebook.url);
  await page.getByRole('button', { name: 'Sign in with warden' }).click();
  await page.waitForURL(`${warden.url}/**`);
  await screenshot(page, 'signin-login');
  await fillLogin(page, 'alice', PASSWORD);
  // The consent page names the app and asks.
  await page.locator('button[name=decision][value=allow]').waitFor();
  assert.match(await page.content(), /Gradebook/);
  await screenshot(page, 'signin-consent');
  await decide(page, 'allow');
  await page.waitForURL(`${gradebook.url}/`);
  assert.match(await page.locator('body').innerText(), /Signed in/);
  assert.match(await page.locator('body').innerText(), /alice/);
  const session = (await context.cookies(warden.url)).find((c) => c.name === 'warden_session');
  assert.ok(session, 'warden set its browser session');
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, 'Lax');

  // The second app: consent (a new client), but no login form.
  await page.goto(library.url);
  await page.getByRole('button', { name: 'Sign in with warden' }).click();
  await page.locator('button[name=decision][value=allow]').waitFor();
  assert.equal(await page.locator('input[name=password]').count(), 0, 'no password prompt');
  assert.match(await page.content(), /Library/);
  await decide(page, 'allow');
  await page.waitForURL(`${library.url}/`);
  assert.match(await page.locator('body').innerText(), /Signed in/);

  // Consent is remembered: the first app again goes straight through.
  // (Its own session cookie was replaced by the second app's: cookies do
  // not tell the ports of one host apart, and both apps name theirs alike.)
  await page.goto(gradebook.url);
  await page.getByRole('button', { name: 'Sign in with warden' }).click();
  await page.waitForURL(`${gradebook.url}/`);
  assert.match(await page.locator('body').innerText(), /Signed in/);
  await context.close();
});

test('deny on the consent page: the app is told access_denied', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(gradebook.url);
  await page.getByRole('button', { name: 'Sign in with warden' }).click();
  await fillLogin(page, 'bob', PASSWORD);
  await decide(page, 'deny');
  await page.waitForURL(`${gradebook.url}/**`);
  assert.match(await page.locator('body').innerText(), /You did not allow the sign-in/);
  await context.close();
});

test('a wrong password says so on the login page, and the right one gets in', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(library.url);
  await page.getByRole('button', { name: 'Sign in with warden' }).click();
  await fillLogin(page, 'carol', 'not the password');
  await page.getByText('Incorrect username or password').waitFor();
  await screenshot(page, 'signin-wrong-password');
  await fillLogin(page, 'carol', PASSWORD);
  await page.locator('button[name=decision][value=allow]').waitFor();
  await decide(page, 'allow');
  await page.waitForURL(`${library.url}/`);
  await context.close();
});

test('signing out at warden ends the browser session: the next sign-in asks again', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(gradebook.url);
  await page.getByRole('button', { name: 'Sign in with warden' }).click();
  await fillLogin(page, 'alice', PASSWORD);
  await page.waitForURL(`${gradebook.url}/`);
  // warden's own page for a signed-in browser offers to sign out.
  await page.goto(`${warden.url}/login`);
  await page.getByText('Signed in as').waitFor();
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForLoadState();
  const cookies = await context.cookies(warden.url);
  assert.equal(cookies.find((c) => c.name === 'warden_session'), undefined);
  // Back in the app: signing in again needs the password.
  await page.goto(library.url);
  await page.getByRole('button', { name: 'Sign in with warden' }).click();
  await page.locator('input[name=password]').waitFor();
  await context.close();
});
