// warden's account page: plain JavaScript, no dependencies.
//
// The access token lives in this closure only, never in Web Storage. The
// refresh token is the HttpOnly `warden_refresh` cookie of warden's cookie
// mode: this script cannot read it, the browser sends it to /token only.
// A reload signs the person back in with a cookie refresh.
'use strict';

(() => {
  let access = null; // the access token, in memory only
  let scopes = '';
  let refreshTimer = null;

  const $ = (id) => document.getElementById(id);

  // `link`, when given, is `{ href, text }`: an address to go to, shown
  // after the text.
  function show(text, kind, link) {
    const m = $('message');
    m.textContent = text;
    m.removeAttribute('title');
    if (link) {
      const a = document.createElement('a');
      a.href = link.href;
      a.textContent = link.text;
      m.append(' ', a);
    }
    m.className = kind;
    m.setAttribute('role', kind === 'error' ? 'alert' : 'status');
    m.hidden = false;
  }

  function clearMessage() {
    $('message').hidden = true;
    $('message').textContent = '';
  }

  // A readable sentence from an API error body: `{"detail": "..."}`, or a
  // 422's `{"detail": [{"loc", "msg"}]}`.
  function describe(r) {
    const detail = r.data && r.data.detail;
    if (typeof detail === 'string') return detail;
    if (Array.isArray(detail)) {
      return detail
        .map((e) => {
          const field = Array.isArray(e.loc) ? e.loc[e.loc.length - 1] : '';
          const name = String(field).replace(/_/g, ' ');
          if (!name || name === 'body') return e.msg;
          return `${name[0].toUpperCase()}${name.slice(1)}: ${e.msg}`;
        })
        .join('; ');
    }
    if (r.status === 429) return 'Too many attempts; try again later.';
    if (r.status === 503) return 'The server is busy; try again in a moment.';
    if (r.status === 0) return 'The server cannot be reached.';
    return `The request failed (HTTP ${r.status}).`;
  }

  async function call(method, path, opts = {}) {
    const headers = {};
    let body;
    if (opts.form) {
      headers['Content-Type'] = 'application/x-www-form-urlencoded';
      body = new URLSearchParams(opts.form);
    } else if (opts.json) {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(opts.json);
    }
    const authed = opts.auth !== false && access !== null;
    if (authed) headers.Authorization = `Bearer ${access}`;
    let r;
    try {
      r = await fetch(path, { method, headers, body, credentials: 'same-origin', cache: 'no-store' });
    } catch (_) {
      return { status: 0, ok: false, data: null };
    }
    let data = null;
    const text = await r.text();
    if (text) {
      try {
        data = JSON.parse(text);
      } catch (_) {
        data = null;
      }
    }
    // An expired or ended access token: refresh once with the cookie, then
    // try again.
    if (r.status === 401 && authed && opts.retry !== false) {
      if (await refresh()) return call(method, path, { ...opts, retry: false });
      signedOut('Your session has ended; please sign in again.', 'error');
    }
    return { status: r.status, ok: r.ok, data };
  }

  // Takes a token response (cookie mode: no refresh_token in it).
  function accept(tokens) {
    access = tokens.access_token;
    scopes = tokens.scope || '';
    clearTimeout(refreshTimer);
    // Refresh shortly before the access token expires.
    const lead = Math.min(60, tokens.expires_in * 0.2);
    refreshTimer = setTimeout(async () => {
      if (!(await refresh())) signedOut('Your session has ended; please sign in again.', 'error');
    }, Math.max(1, tokens.expires_in - lead) * 1000);
  }

  // A refresh with the cookie: warden reads and rotates it. Sets `lastRefusal`
  // when warden refused the cookie because of this page's origin.
  let lastRefusal = null;
  async function refresh() {
    const r = await call('POST', '/token', { form: { grant_type: 'refresh_token' }, auth: false });
    if (r.ok) {
      accept(r.data);
      return true;
    }
    access = null;
    const detail = r.data && typeof r.data.detail === 'string' ? r.data.detail : '';
    lastRefusal = r.status === 400 && /origin/i.test(detail) ? detail : null;
    if (lastRefusal) return false;
    // Signed in on warden's sign-in page (/login): the browser session's
    // HttpOnly cookie buys an access token of that session (no refresh
    // token; this asks again when it runs out).
    const s = await call('POST', '/account/session', { auth: false });
    if (s.ok) {
      accept(s.data);
      return true;
    }
    return false;
  }

  function signedOut(text, kind, link) {
    access = null;
    clearTimeout(refreshTimer);
    $('loading').hidden = true;
    $('signed-in').hidden = true;
    $('signed-out').hidden = false;
    if (text) show(text, kind || 'ok', link);
  }

  async function showAccount() {
    const me = await call('GET', '/users/me');
    if (!me.ok) {
      signedOut(describe(me), 'error');
      return;
    }
    $('username').textContent = me.data.username;
    $('roles').textContent = me.data.roles.join(', ') || 'none';
    $('scopes').textContent = scopes || 'none';
    $('loading').hidden = true;
    $('signed-out').hidden = true;
    $('signed-in').hidden = false;
    await loadSessions();
  }

  // Opened at an address that is not warden's issuer (another name of the
  // host, a port forward): warden accepts the refresh cookie only from its
  // own origin, so this page can neither sign in nor stay signed in here.
  // warden redirects the loopback names (localhost for 127.0.0.1) itself;
  // this names the address for the rest, from the server's metadata.
  async function wrongAddress(refusal) {
    let issuer = null;
    try {
      const r = await fetch('/.well-known/oauth-authorization-server', { cache: 'no-store' });
      if (r.ok) issuer = (await r.json()).issuer;
    } catch (_) {
      issuer = null;
    }
    const here = `This page is at ${location.origin}, but warden's sign-in cookie works only at warden's own address (its issuer)`;
    if (typeof issuer !== 'string' || !/^https?:\/\//.test(issuer)) {
      signedOut(`${here}. Warden said: ${refusal}.`, 'error');
      return;
    }
    const account = `${issuer.replace(/\/+$/, '')}/account`;
    signedOut(`${here}: open`, 'error', { href: account, text: account });
    $('message').title = refusal;
  }

  function when(iso) {
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
  }

  // `label` is the column's name, shown beside the value when a narrow
  // screen stacks each session into a card (style.css).
  function cell(label, text, title) {
    const td = document.createElement('td');
    td.dataset.label = label;
    td.textContent = text;
    if (title) td.title = title;
    return td;
  }

  async function loadSessions() {
    const r = await call('GET', '/users/me/sessions');
    if (!r.ok) {
      show(describe(r), 'error');
      return;
    }
    const tbody = $('sessions').querySelector('tbody');
    tbody.replaceChildren();
    // This device first, then the others, newest first.
    const sessions = [...r.data].sort((a, b) => Number(b.current) - Number(a.current));
    for (const s of sessions) {
      const tr = document.createElement('tr');
      tr.dataset.id = s.id;
      // The server's name for the device; the raw user agent on hover.
      const device = cell('Device', s.device || 'Unknown device', s.user_agent || 'No user agent');
      device.className = 'device';
      tr.append(
        device,
        cell('Address', s.ip || ''),
        cell('Signed in', when(s.created_at), s.created_at),
        cell('Last used', when(s.last_used_at), s.last_used_at),
      );
      const last = document.createElement('td');
      last.className = 'end';
      if (s.current) {
        tr.className = 'current';
        const badge = document.createElement('span');
        badge.className = 'badge';
        badge.textContent = 'this device';
        last.append(badge);
      } else {
        const end = document.createElement('button');
        end.type = 'button';
        end.className = 'end-session secondary';
        end.textContent = 'End';
        end.addEventListener('click', () => endSession(s.id));
        last.append(end);
      }
      tr.append(last);
      tbody.append(tr);
    }
  }

  async function endSession(id) {
    const r = await call('DELETE', `/users/me/sessions/${encodeURIComponent(id)}`);
    if (r.ok) show('Session ended.', 'ok');
    else if (access !== null) show(describe(r), 'error');
    if (access !== null) await loadSessions();
  }

  async function signOut(all) {
    const r = await call('POST', all ? '/logout?all=true' : '/logout', { retry: false });
    if (r.ok || r.status === 401) {
      signedOut(all ? 'Signed out everywhere.' : 'Signed out.', 'ok');
    } else {
      show(describe(r), 'error');
    }
  }

  async function signIn(username, password) {
    const r = await call('POST', '/token?cookie=true', {
      form: { grant_type: 'password', username, password },
      auth: false,
    });
    if (!r.ok) return r;
    accept(r.data);
    await showAccount();
    return r;
  }

  function busy(form, on) {
    for (const b of form.querySelectorAll('button')) b.disabled = on;
  }

  $('signin-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const form = ev.currentTarget;
    clearMessage();
    busy(form, true);
    const r = await signIn($('signin-username').value, $('signin-password').value);
    busy(form, false);
    if (r.ok) {
      form.reset();
    } else if (r.status === 400 && /origin/i.test(describe(r))) {
      $('signin-password').value = '';
      await wrongAddress(describe(r));
    } else {
      show(describe(r), 'error');
      $('signin-password').value = '';
    }
  });

  $('register-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const form = ev.currentTarget;
    clearMessage();
    const user = {
      username: $('register-username').value,
      email: $('register-email').value,
      password: $('register-password').value,
    };
    const fullName = $('register-full-name').value.trim();
    if (fullName) user.full_name = fullName;
    busy(form, true);
    const r = await call('POST', '/users', { json: user, auth: false });
    if (!r.ok) {
      busy(form, false);
      show(describe(r), 'error');
      return;
    }
    const s = await signIn(user.username, user.password);
    busy(form, false);
    if (s.ok) {
      form.reset();
      show(`Account created. Welcome, ${r.data.username}!`, 'ok');
    } else {
      show(`Account created, but signing in failed: ${describe(s)}`, 'error');
    }
  });

  $('password-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const form = ev.currentTarget;
    clearMessage();
    busy(form, true);
    // cookie=true: the fresh refresh token replaces this browser's cookie
    // (every earlier session, this one's included, has just ended).
    const r = await call('PUT', '/users/me/password?cookie=true', {
      json: {
        current_password: $('current-password').value,
        new_password: $('new-password').value,
      },
    });
    busy(form, false);
    if (r.ok) {
      accept(r.data);
      form.reset();
      show('Password changed. Your other sessions were signed out.', 'ok');
      await loadSessions();
    } else if (access !== null) {
      show(describe(r), 'error');
    }
  });

  $('signout').addEventListener('click', () => signOut(false));
  $('signout-all').addEventListener('click', () => signOut(true));

  (async () => {
    if (await refresh()) await showAccount();
    else if (lastRefusal) {
      // The cookie is there but may not be used from this origin.
      await wrongAddress(lastRefusal);
    } else signedOut();
  })();
})();
