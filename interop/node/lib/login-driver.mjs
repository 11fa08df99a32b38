// The one browser stand-in every Node OAuth interop test uses (the twin of
// interop/oauth/login_driver.py).
//
// signIn(authorizationUrl, redirectUri, { usernameField, username, password })
// does what a person with a browser does, through the hosted pages' HTML
// forms only: it fetches the authorization URL keeping cookies, follows
// redirects by hand, and on each page with a form
// - a login form (the form with a password field): fills the username field
//   (`username` at warden, `login` at oidc-provider's devInteractions) and the
//   password, keeps every other input as the page set it (hidden CSRF tokens,
//   ...), and submits;
// - a consent form: submits with the button `decision=allow` when there is
//   one (warden), or the form's single submit button (oidc-provider).
// It stops at the first Location that starts with the client's redirect URI
// (nothing listens there; it is never fetched) and returns that URL.
//
// signOut(endSessionUrl, postLogoutRedirectUri, { jar }) does the same for
// RP-initiated logout: it follows the end-session URL with the browser's
// cookies; on a confirmation page it presses `logout=yes` (oidc-provider's
// page, whose buttons sit outside the form and name it with `form=`, as
// HTML allows), `decision=allow`, or the form's only button; and it stops at
// the redirect to the post-logout redirect URI.

const MAX_STEPS = 12;
const REDIRECTS = new Set([301, 302, 303, 307, 308]);

export class SignInError extends Error {}

// --- a small cookie jar (enough for first-party cookies on one host) --------

export class CookieJar {
  #cookies = new Map(); // `${name};${path}` -> { name, value, path }

  store(url, response) {
    for (const line of response.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';');
      const eq = pair.indexOf('=');
      if (eq < 1) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      let path = new URL(url).pathname.replace(/\/[^/]*$/, '') || '/';
      let expired = false;
      for (const attr of attrs) {
        const [k, v = ''] = attr.split('=');
        const key = k.trim().toLowerCase();
        if (key === 'path' && v.trim().startsWith('/')) path = v.trim();
        if (key === 'max-age' && Number(v) <= 0) expired = true;
        if (key === 'expires' && Date.parse(v) <= Date.now()) expired = true;
      }
      const id = `${name};${path}`;
      if (expired) this.#cookies.delete(id);
      else this.#cookies.set(id, { name, value, path });
    }
  }

  header(url) {
    const { pathname } = new URL(url);
    const matches = [...this.#cookies.values()].filter(
      (c) => pathname === c.path || pathname.startsWith(c.path.endsWith('/') ? c.path : `${c.path}/`),
    );
    return matches.map((c) => `${c.name}=${c.value}`).join('; ');
  }
}

// --- a small form parser: every <form>, its inputs and submit buttons ------

const ENTITIES = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", '#39': "'" };

function decode(text) {
  return text.replace(/&(#x[0-9a-f]+|#[0-9]+|[a-z]+);/gi, (all, ent) => {
    if (ent[0] === '#') {
      const code = ent[1].toLowerCase() === 'x' ? parseInt(ent.slice(2), 16) : parseInt(ent.slice(1), 10);
      return String.fromCodePoint(code);
    }
    return ENTITIES[ent.toLowerCase()] ?? all;
  });
}

function attributes(source) {
  const attrs = {};
  const re = /([^\s"'>/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?/g;
  for (const m of source.matchAll(re)) {
    attrs[m[1].toLowerCase()] = decode(m[2] ?? m[3] ?? m[4] ?? '');
  }
  return attrs;
}

export function parseForms(html) {
  const forms = [];
  const owned = []; // [formId, kind, entry]: controls whose `form=` names their form (HTML's form owner)
  let form = null;
  let textarea = null;
  // Comments and scripts hold no form fields a browser would send.
  const body = html.replace(/<!--[\s\S]*?-->/g, '').replace(/<script\b[\s\S]*?<\/script>/gi, '');
  const re = /<(\/?)(form|input|button|textarea)\b([^>]*)>/gi;
  let last = 0;
  for (const m of body.matchAll(re)) {
    const [, closing, rawTag, rest] = m;
    const tag = rawTag.toLowerCase();
    if (textarea && tag === 'textarea' && closing) {
      form?.fields.push({ name: textarea, type: 'textarea', value: decode(body.slice(last, m.index)) });
      textarea = null;
      continue;
    }
    last = m.index + m[0].length;
    if (tag === 'form') {
      if (closing) {
        form = null;
      } else {
        const a = attributes(rest);
        form = {
          id: a.id, action: a.action ?? '', method: (a.method ?? 'get').toLowerCase(), fields: [], buttons: [],
        };
        forms.push(form);
      }
      continue;
    }
    if (closing) continue;
    const a = attributes(rest);
    if (!form && a.form === undefined) continue;
    const push = (kind, entry) => {
      if (a.form !== undefined) owned.push([a.form, kind, entry]);
      else form[kind].push(entry);
    };
    if (tag === 'input') {
      const type = (a.type ?? 'text').toLowerCase();
      if (type === 'submit' || type === 'image') {
        push('buttons', { name: a.name, value: a.value ?? '' });
      } else if (type === 'checkbox' || type === 'radio') {
        if (a.name && 'checked' in a) push('fields', { name: a.name, type, value: a.value ?? 'on' });
      } else if (a.name && !['button', 'reset', 'file'].includes(type)) {
        push('fields', { name: a.name, type, value: a.value ?? '' });
      }
    } else if (tag === 'button') {
      if ((a.type ?? 'submit').toLowerCase() === 'submit') push('buttons', { name: a.name, value: a.value ?? '' });
    } else if (tag === 'textarea' && a.name && form) {
      textarea = a.name;
    }
  }
  for (const [id, kind, entry] of owned) {
    forms.find((f) => f.id === id)?.[kind].push(entry);
  }
  return forms;
}

const hasPassword = (form) => form.fields.some((f) => f.type === 'password');
const isAllow = (b) => b.name === 'decision' && b.value === 'allow';

export function pickForm(forms) {
  return forms.find(hasPassword)
    ?? forms.find((f) => f.buttons.some(isAllow))
    ?? (forms.filter((f) => f.method === 'post').length === 1 ? forms.find((f) => f.method === 'post') : undefined)
    ?? (() => { throw new SignInError(`no login or consent form among ${JSON.stringify(forms)}`); })();
}

export function fill(form, { usernameField, username, password }) {
  let kind;
  let button;
  let data;
  if (hasPassword(form)) {
    if (!form.fields.some((f) => f.name === usernameField)) {
      throw new SignInError(`login form has no field ${usernameField}: ${JSON.stringify(form)}`);
    }
    data = form.fields.map((f) => [f.name, f.name === usernameField ? username : f.type === 'password' ? password : f.value]);
    [button] = form.buttons;
    kind = 'login';
  } else {
    data = form.fields.map((f) => [f.name, f.value]);
    button = form.buttons.find(isAllow) ?? (form.buttons.length === 1 ? form.buttons[0] : undefined);
    if (!button) throw new SignInError(`cannot tell which button of this form allows: ${JSON.stringify(form)}`);
    kind = 'consent';
  }
  if (button?.name) data.push([button.name, button.value]);
  return { kind, data: new URLSearchParams(data) };
}

/**
 * Drive the hosted pages from `authorizationUrl` to the redirect back.
 * Returns { callback, steps }: the URL the browser was sent to, and the kinds
 * of forms submitted on the way (e.g. ['login', 'consent']). Pass the same
 * `jar` to sign in again with the provider's browser session.
 */
export async function signIn(authorizationUrl, redirectUri, { usernameField, username, password, jar = new CookieJar() }) {
  let method = 'GET';
  let url = String(authorizationUrl);
  let body;
  const steps = [];
  const trail = [];
  for (let i = 0; i < MAX_STEPS; i += 1) {
    const headers = {};
    const cookie = jar.header(url);
    if (cookie) headers.cookie = cookie;
    if (body) headers['content-type'] = 'application/x-www-form-urlencoded';
    const response = await fetch(url, { method, headers, body, redirect: 'manual' });
    jar.store(url, response);
    trail.push(`${method} ${url} -> ${response.status}`);
    if (REDIRECTS.has(response.status)) {
      await response.arrayBuffer();
      const location = response.headers.get('location');
      if (!location) throw new SignInError(`redirect without Location: ${trail.join('; ')}`);
      const target = new URL(location, url).href;
      if (target.startsWith(redirectUri)) return { callback: target, steps };
      if (response.status !== 307 && response.status !== 308) {
        method = 'GET';
        body = undefined;
      }
      url = target;
      continue;
    }
    const text = await response.text();
    if (response.status !== 200 || !(response.headers.get('content-type') ?? '').includes('html')) {
      throw new SignInError(`unexpected answer ${response.status}: ${text.slice(0, 2000)}; ${trail.join('; ')}`);
    }
    const form = pickForm(parseForms(text));
    const filled = fill(form, { usernameField, username, password });
    steps.push(filled.kind);
    const action = new URL(form.action || url, url);
    if (form.method === 'post') {
      method = 'POST';
      body = filled.data.toString();
    } else {
      method = 'GET';
      action.search = filled.data.toString();
      body = undefined;
    }
    url = action.href;
  }
  throw new SignInError(`no redirect to ${redirectUri} after ${MAX_STEPS} steps: ${trail.join('; ')}`);
}

const isSignOut = (b) => (b.name === 'logout' && b.value === 'yes') || isAllow(b);

/**
 * Follow an end-session URL (RP-initiated logout) to the redirect back to
 * `postLogoutRedirectUri`, confirming on a logout page when one is shown.
 * Returns { callback, steps } (steps: ['confirm'] when a page was confirmed).
 */
export async function signOut(endSessionUrl, postLogoutRedirectUri, { jar }) {
  let method = 'GET';
  let url = String(endSessionUrl);
  let body;
  const steps = [];
  const trail = [];
  for (let i = 0; i < MAX_STEPS; i += 1) {
    const headers = {};
    const cookie = jar.header(url);
    if (cookie) headers.cookie = cookie;
    if (body) headers['content-type'] = 'application/x-www-form-urlencoded';
    const response = await fetch(url, { method, headers, body, redirect: 'manual' });
    jar.store(url, response);
    trail.push(`${method} ${url} -> ${response.status}`);
    if (REDIRECTS.has(response.status)) {
      await response.arrayBuffer();
      const location = response.headers.get('location');
      if (!location) throw new SignInError(`redirect without Location: ${trail.join('; ')}`);
      const target = new URL(location, url).href;
      if (target.startsWith(postLogoutRedirectUri)) return { callback: target, steps };
      if (response.status !== 307 && response.status !== 308) {
        method = 'GET';
        body = undefined;
      }
      url = target;
      continue;
    }
    const text = await response.text();
    if (response.status !== 200 || !(response.headers.get('content-type') ?? '').includes('html')) {
      throw new SignInError(`unexpected answer ${response.status}: ${text.slice(0, 2000)}; ${trail.join('; ')}`);
    }
    if (steps.length) throw new SignInError(`logout page shown again: ${text.slice(0, 2000)}; ${trail.join('; ')}`);
    const forms = parseForms(text);
    const form = forms.find((f) => f.buttons.some(isSignOut))
      ?? (forms.length === 1 && forms[0].buttons.length === 1 ? forms[0] : undefined);
    if (!form) throw new SignInError(`no logout confirmation among ${JSON.stringify(forms)}; ${trail.join('; ')}`);
    const button = form.buttons.find(isSignOut) ?? form.buttons[0];
    const data = new URLSearchParams(form.fields.map((f) => [f.name, f.value]));
    if (button.name) data.append(button.name, button.value);
    steps.push('confirm');
    const action = new URL(form.action || url, url);
    if (form.method === 'post') {
      method = 'POST';
      body = data.toString();
    } else {
      method = 'GET';
      action.search = data.toString();
      body = undefined;
    }
    url = action.href;
  }
  throw new SignInError(`no redirect to ${postLogoutRedirectUri} after ${MAX_STEPS} steps: ${trail.join('; ')}`);
}
