// The form logic of lib/login-driver.mjs on pages shaped like the contract's
// hosted pages (warden's are not built yet) and like oidc-provider's, and its
// cookie jar. No server needed.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { CookieJar, fill, parseForms, pickForm, SignInError } from '../lib/login-driver.mjs';

const WARDEN_LOGIN = `<!doctype html><html><body>
<form method="post" action="/logout"><button>Sign out</button></form>
<!-- <form><input type="password" name="old"></form> -->
<form method="post" action="/login?return_to=%2Fauthorize%3Fclient_id%3Dx">
  <input type="hidden" name="csrf" value="t&amp;ok">
  <label>Username <input name="username" autocomplete="username" autofocus></label>
  <label>Password <input type="password" name="password"></label>
  <input type="checkbox" name="remember" value="yes">
  <button type="submit">Sign in</button>
</form></body></html>`;

const WARDEN_CONSENT = `<form method=post action='/authorize/consent'>
  <input type=hidden name=csrf value=abc>
  <input type=hidden name=request value="r1">
  <textarea name="note">hi &lt;3</textarea>
  <button name="decision" value="deny">Deny</button>
  <button name="decision" value="allow" type="submit">Allow</button>
  <button type="button">Help</button>
</form>`;

const OIDC_PROVIDER_CONSENT = `<form autocomplete="off" action="/interaction/u1" method="post">
  <input type="hidden" name="prompt" value="consent"/>
  <button autofocus type="submit" class="login login-submit">Continue</button>
</form>`;

const who = { usernameField: 'username', username: 'alice', password: 'pw' };

test('the login form keeps hidden fields and fills the named username field', () => {
  const form = pickForm(parseForms(WARDEN_LOGIN));
  assert.ok(form.action.startsWith('/login?return_to='));
  const { kind, data } = fill(form, who);
  assert.equal(kind, 'login');
  assert.deepEqual([...data], [['csrf', 't&ok'], ['username', 'alice'], ['password', 'pw']]);
});

test('a login form without the expected username field is an error', () => {
  assert.throws(() => fill(pickForm(parseForms(WARDEN_LOGIN)), { ...who, usernameField: 'login' }), SignInError);
});

test('the consent form submits decision=allow', () => {
  const { kind, data } = fill(pickForm(parseForms(WARDEN_CONSENT)), who);
  assert.equal(kind, 'consent');
  assert.deepEqual([...data], [['csrf', 'abc'], ['request', 'r1'], ['note', 'hi <3'], ['decision', 'allow']]);
});

test('a single unnamed submit button is pressed', () => {
  const { kind, data } = fill(pickForm(parseForms(OIDC_PROVIDER_CONSENT)), who);
  assert.equal(kind, 'consent');
  assert.deepEqual([...data], [['prompt', 'consent']]);
});

test('two unnamed buttons are ambiguous', () => {
  const page = '<form method="post"><button>Yes</button><button>No</button></form>';
  assert.throws(() => fill(pickForm(parseForms(page)), who), SignInError);
});

test('the cookie jar keeps paths and forgets expired cookies', () => {
  const jar = new CookieJar();
  const response = (...cookies) => ({ headers: { getSetCookie: () => cookies } });
  jar.store('http://127.0.0.1:1/authorize', response('warden_session=s1; Path=/; HttpOnly; SameSite=Lax', 'pre=p1'));
  jar.store('http://127.0.0.1:1/interaction/u1', response('_interaction=i1; path=/interaction/u1'));
  assert.equal(jar.header('http://127.0.0.1:1/login'), 'warden_session=s1; pre=p1');
  assert.equal(jar.header('http://127.0.0.1:1/interaction/u1'), 'warden_session=s1; pre=p1; _interaction=i1');
  assert.equal(jar.header('http://127.0.0.1:1/interaction/u10'), 'warden_session=s1; pre=p1');
  jar.store('http://127.0.0.1:1/x', response('pre=; Path=/; Max-Age=0'));
  assert.equal(jar.header('http://127.0.0.1:1/'), 'warden_session=s1');
});

// oidc-provider's logout confirmation (rpInitiatedLogout's default
// logoutSource): the buttons sit outside the form and name it with `form=`.
const OIDC_PROVIDER_LOGOUT = `<div class="container">
  <h1>Do you want to sign-out from 127.0.0.1:5123?</h1>
  <form id="op.logoutForm" method="post" action="http://127.0.0.1:5123/session/end/confirm"><input type="hidden" name="xsrf" value="x1"/></form>
  <button autofocus type="submit" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button>
  <button type="submit" form="op.logoutForm">No, stay signed in</button>
</div>`;

test('controls outside a form belong to the form their form= attribute names', () => {
  const [form] = parseForms(OIDC_PROVIDER_LOGOUT);
  assert.equal(form.id, 'op.logoutForm');
  assert.equal(form.method, 'post');
  assert.deepEqual(form.fields, [{ name: 'xsrf', type: 'hidden', value: 'x1' }]);
  assert.deepEqual(form.buttons, [{ name: 'logout', value: 'yes' }, { name: undefined, value: '' }]);
  // a control naming no form on the page belongs to none
  assert.equal(parseForms('<button form="nope" name="x">x</button>').length, 0);
});
