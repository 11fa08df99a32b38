// The pages around the API in headless Chromium: the landing page at /,
// the icon, and trailing-slash redirects.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, onlyOrigin, screenshot, startWarden } from '../harness.js';

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

test('GET / is a landing page that works without JavaScript and leads to the account page and the docs', async () => {
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  const foreign = onlyOrigin(page, warden.url);
  const r = await page.goto(`${warden.url}/`);
  assert.equal(r.status(), 200);
  assert.equal(await page.title(), 'warden');
  assert.equal(await page.locator('h2').innerText(), 'warden is running');
  const links = await page.locator('.links a').evaluateAll((as) => as.map((a) => a.getAttribute('href')));
  assert.deepEqual(links, [
    '/account',
    '/docs',
    '/openapi.json',
    '/.well-known/oauth-authorization-server',
    '/.well-known/jwks.json',
  ]);
  // Styled by the account page's stylesheet: the header is dark.
  const header = await page.locator('header').evaluate((h) => getComputedStyle(h).backgroundColor);
  assert.equal(header, 'rgb(29, 36, 51)');
  await screenshot(page, 'landing');

  // Each link answers (the metadata's issuer is this server).
  const metadata = await page.goto(`${warden.url}/.well-known/oauth-authorization-server`);
  assert.equal((await metadata.json()).issuer, warden.url);
  await page.goto(`${warden.url}/`);
  await Promise.all([page.waitForURL(`${warden.url}/account`), page.locator('.links a[href="/account"]').click()]);
  await page.goto(`${warden.url}/`);
  await Promise.all([page.waitForURL(`${warden.url}/docs/`), page.locator('.links a[href="/docs"]').click()]);
  assert.deepEqual(foreign, [], 'the landing page requested another origin');
  await context.close();
});

test('the pages link an SVG icon and /favicon.ico is an icon, cached', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  for (const path of ['/', '/account']) {
    await page.goto(`${warden.url}${path}`);
    const icon = page.locator('link[rel="icon"]');
    assert.equal(await icon.getAttribute('href'), '/favicon.svg', path);
  }
  for (const [path, type] of [
    ['/favicon.svg', 'image/svg+xml'],
    ['/favicon.ico', 'image/x-icon'],
  ]) {
    const r = await page.goto(`${warden.url}${path}`);
    assert.equal(r.status(), 200, path);
    const headers = r.headers();
    assert.equal(headers['content-type'], type);
    assert.equal(headers['cache-control'], 'public, max-age=86400');
    assert.match(headers.etag, /^"[0-9a-f]{16}"$/);
  }
  // The browser decodes both as images (on a page of warden's, whose
  // policy allows its own images).
  await page.goto(`${warden.url}/`);
  for (const src of ['/favicon.ico', '/favicon.svg']) {
    const width = await page.evaluate(async (s) => {
      const img = new Image();
      img.src = s;
      await img.decode();
      return img.naturalWidth;
    }, src);
    assert.ok(width >= 16, `${src}: ${width}`);
  }
  await context.close();
});

test('a trailing slash lands on the page without it; an unknown path is the JSON 404', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const r = await page.goto(`${warden.url}/account/`);
  assert.equal(r.status(), 200);
  assert.equal(page.url(), `${warden.url}/account`);
  assert.equal((await r.request().redirectedFrom().response()).status(), 308);
  await page.locator('#signin-form').waitFor();

  const missing = await page.goto(`${warden.url}/no-such-page/`);
  assert.equal(missing.status(), 404);
  assert.equal(page.url(), `${warden.url}/no-such-page/`);
  assert.deepEqual(await missing.json(), { detail: 'Not Found' });
  await context.close();
});
