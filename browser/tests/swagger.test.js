// Swagger UI at /docs, in headless Chromium: the Authorize button's
// OAuth2 password flow, and a pasted bearer token.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { PASSWORD, launchBrowser, onlyOrigin, screenshot, startWarden } from '../harness.js';

let warden;
let browser;

before(async () => {
  warden = await startWarden();
  await warden.register('alice');
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await warden?.stop();
});

const OP = '#operations-users-get_current_user';

/// Every Content-Security-Policy violation the page reports, from the
/// console (Chromium logs each "Refused to ...") and from the DOM event.
function cspViolations(page) {
  const seen = [];
  page.on('console', (msg) => {
    if (/Content Security Policy|Refused to/i.test(msg.text())) seen.push(msg.text());
  });
  page.on('pageerror', (e) => seen.push(`pageerror: ${e.message}`));
  page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      console.error(`Refused to load (Content Security Policy): ${e.violatedDirective} ${e.blockedURI}`);
    });
  });
  return seen;
}

async function openDocs() {
  const page = await browser.newPage();
  const foreign = onlyOrigin(page, warden.url);
  const violations = cspViolations(page);
  const docs = await page.goto(`${warden.url}/docs/`);
  // Served with a policy, and never in a frame.
  const headers = docs.headers();
  assert.match(headers['content-security-policy'], /script-src 'self';/);
  assert.match(headers['content-security-policy'], /frame-ancestors 'none'/);
  assert.equal(headers['x-frame-options'], 'DENY');
  await page.locator(OP).waitFor();
  page.violations = violations;
  // Expand GET /users/me; "Try it out" is on from the start
  // (tryItOutEnabled), so Execute is there at once.
  await page.locator(`${OP} .opblock-summary-control`).click();
  await page.locator(`${OP} .try-out__btn`, { hasText: 'Cancel' }).waitFor();
  await page.locator(`${OP} button.execute`).waitFor();
  return { page, foreign };
}

/// Clicks Execute; returns the HTTP status the browser saw and the status
/// and body Swagger UI shows.
async function execute(page) {
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.url() === `${warden.url}/users/me` && r.request().method() === 'GET'),
    page.locator(`${OP} button.execute`).click(),
  ]);
  const status = String(response.status());
  const shown = page.locator(`${OP} .live-responses-table tbody .response-col_status`, { hasText: status });
  await shown.waitFor();
  const body = page.locator(`${OP} .live-responses-table .response-col_description pre.microlight`).first();
  await body.waitFor();
  return { status: response.status(), shownStatus: (await shown.innerText()).trim(), body: await body.innerText() };
}

async function openAuthorizeDialog(page) {
  await page.locator('.auth-wrapper button.authorize').click();
  await page.locator('.modal-ux').waitFor();
}

test('Authorize with a username and password, then GET /users/me shows 200 and the user; Logout brings back the 401', async () => {
  const { page, foreign } = await openDocs();

  // Not authorized yet: the 401 and its detail.
  let r = await execute(page);
  assert.equal(r.status, 401);
  assert.equal(r.shownStatus, '401');
  assert.match(r.body, /"detail": "Not authenticated"/);
  await screenshot(page, 'swagger-not-authorized', page.locator(OP));

  // Authorize: the OAuth2 password flow against POST /token.
  await openAuthorizeDialog(page);
  // The scheme's section of the dialog, found by its name (its inputs are
  // replaced by the values once authorized).
  const oauth = page.locator('.auth-container', { hasText: 'OAuth2PasswordBearer' });
  await oauth.locator('#oauth_username').fill('alice');
  await oauth.locator('#oauth_password').fill(PASSWORD);
  const [tokenResponse] = await Promise.all([
    page.waitForResponse((res) => res.url().startsWith(`${warden.url}/token`)),
    oauth.getByRole('button', { name: 'Apply given OAuth2 credentials' }).click(),
  ]);
  assert.equal(tokenResponse.status(), 200);
  // The dialog now offers Logout for this scheme.
  await oauth.getByRole('button', { name: 'Remove authorization' }).waitFor();
  await screenshot(page, 'swagger-authorized-dialog', page.locator('.modal-ux-inner'));
  await page.locator('.modal-ux .btn-done').first().click();
  await page.locator('.modal-ux').waitFor({ state: 'detached' });

  r = await execute(page);
  assert.equal(r.status, 200);
  assert.equal(r.shownStatus, '200');
  assert.match(r.body, /"username": "alice"/);
  assert.match(r.body, /"email": "alice@example.com"/);
  await screenshot(page, 'swagger-authorized-200', page.locator(OP));

  // Logout in the dialog: the call is anonymous again.
  await openAuthorizeDialog(page);
  await oauth.getByRole('button', { name: 'Remove authorization' }).click();
  await oauth.locator('#oauth_username').waitFor();
  await page.locator('.modal-ux .btn-done').first().click();
  await page.locator('.modal-ux').waitFor({ state: 'detached' });

  r = await execute(page);
  assert.equal(r.status, 401);
  assert.match(r.body, /"detail": "Not authenticated"/);
  await screenshot(page, 'swagger-after-logout-401', page.locator(OP));

  assert.deepEqual(foreign, [], 'Swagger UI requested another origin');
  assert.deepEqual(page.violations, [], 'Swagger UI broke its Content-Security-Policy');
  await page.close();
});

test('a wrong token pasted under bearerAuth visibly fails with 401 Invalid token', async () => {
  const { page, foreign } = await openDocs();
  await openAuthorizeDialog(page);
  const bearer = page.locator('.auth-container', { hasText: 'bearerAuth' });
  await bearer.locator('#auth-bearer-value').fill('eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.');
  await bearer.getByRole('button', { name: 'Apply credentials' }).click();
  await bearer.getByRole('button', { name: 'Remove authorization' }).waitFor();
  await page.locator('.modal-ux .btn-done').first().click();
  await page.locator('.modal-ux').waitFor({ state: 'detached' });

  const r = await execute(page);
  assert.equal(r.status, 401);
  assert.equal(r.shownStatus, '401');
  assert.match(r.body, /"detail": "Invalid token"/);
  await screenshot(page, 'swagger-wrong-bearer-401', page.locator(OP));
  assert.deepEqual(foreign, [], 'Swagger UI requested another origin');
  assert.deepEqual(page.violations, [], 'Swagger UI broke its Content-Security-Policy');
  await page.close();
});

test('no top bar, plain summaries, and real error examples', async () => {
  const { page, foreign } = await openDocs();
  // FastAPI's layout: no top bar with its "Explore" box.
  assert.equal(await page.locator('.topbar').count(), 0);
  assert.equal(await page.getByText('Explore', { exact: true }).count(), 0);
  // Every operation shows a summary, none with literal Markdown.
  const summaries = await page.locator('.opblock-summary-description').allInnerTexts();
  const operations = await page.locator('.opblock').count();
  assert.ok(operations >= 20, `${operations} operations`);
  assert.equal(summaries.length, operations, 'an operation without a summary');
  for (const s of summaries) {
    assert.ok(s.trim().length > 0, 'an empty summary');
    assert.ok(!s.includes('`'), `a summary shows backticks: ${s}`);
  }
  // GET /users/me (expanded by openDocs): its description is rendered
  // Markdown (code, not backticks), and the 401 and 403 examples are the
  // bodies warden sends, not {"detail": "string"}.
  const op = page.locator(OP);
  assert.ok(await op.locator('.opblock-description code').count() > 0, 'the description renders its code');
  const unauthorized = op.locator('tr.response[data-code="401"]');
  await unauthorized.waitFor();
  const shown = await unauthorized.innerText();
  assert.match(shown, /"detail": "(Not authenticated|Invalid token|Token has expired)"/);
  assert.doesNotMatch(shown, /"string"/);
  // The example picker offers each reason.
  const picker = unauthorized.locator('select');
  const options = await picker.locator('option').allInnerTexts();
  assert.ok(options.length >= 3, JSON.stringify(options));
  const forbidden = await op.locator('tr.response[data-code="403"]').innerText();
  assert.match(forbidden, /"detail": "Not enough permissions"/);
  await screenshot(page, 'swagger-error-examples', op);
  assert.deepEqual(foreign, [], 'Swagger UI requested another origin');
  assert.deepEqual(page.violations, [], 'Swagger UI broke its Content-Security-Policy');
  await page.close();
});
