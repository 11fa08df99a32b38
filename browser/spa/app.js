// A single-page app that signs in with oidc-client-ts as a public client
// (authorization code + PKCE), entirely from the browser: discovery, /token
// and /userinfo are cross-origin calls, so they work only if the OP answers
// CORS. `window.SPA_CONFIG` (from /config.js) names the OP and the client:
//   { authority, client_id }
// The page is served at / (home, post-logout landing) and /callback.
/* global oidc */
'use strict';

const config = window.SPA_CONFIG;
const origin = window.location.origin;

const userManager = new oidc.UserManager({
  authority: config.authority,
  client_id: config.client_id,
  redirect_uri: `${origin}/callback`,
  post_logout_redirect_uri: `${origin}/`,
  response_type: 'code',
  scope: 'openid profile email offline_access',
  // The user's claims also from /userinfo (a CORS request with a bearer
  // token: preflighted).
  loadUserInfo: true,
  // Renewal only when asked (the test calls signinSilent itself); with a
  // refresh token signinSilent is the refresh grant, no iframe.
  automaticSilentRenew: false,
  monitorSession: false,
  userStore: new oidc.WebStorageStateStore({ store: window.sessionStorage }),
});

const $ = (id) => document.getElementById(id);

/// The payload of a JWT, decoded without any verification (display only:
/// oidc-client-ts does not verify id token signatures either).
function jwtPayload(jwt) {
  const part = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
  const bytes = Uint8Array.from(atob(part), (c) => c.charCodeAt(0));
  return JSON.parse(new TextDecoder().decode(bytes));
}

/// What the test reads: the state after the last action.
window.spa = { userManager, ready: false, renewals: 0, lastError: null };

async function render() {
  const user = await userManager.getUser();
  if (user && !user.expired) {
    $('status').textContent = 'signed in';
    $('profile').textContent = JSON.stringify(user.profile, null, 2);
    $('id-token').textContent = user.id_token ? JSON.stringify(jwtPayload(user.id_token), null, 2) : '(none)';
  } else {
    $('status').textContent = 'signed out';
    $('profile').textContent = '';
    $('id-token').textContent = '';
  }
  return user;
}

function fail(error) {
  window.spa.lastError = String(error && error.message ? error.message : error);
  $('error').hidden = false;
  $('error').textContent = `Error: ${window.spa.lastError}`;
  $('status').textContent = 'error';
}

$('signin').addEventListener('click', () => {
  userManager.signinRedirect().catch(fail);
});

$('renew').addEventListener('click', async () => {
  try {
    await userManager.signinSilent();
    window.spa.renewals += 1;
    await render();
    $('status').textContent = `signed in (renewed ${window.spa.renewals})`;
  } catch (e) {
    fail(e);
  }
});

$('signout').addEventListener('click', async () => {
  try {
    // First the refresh token is revoked (RFC 7009: another cross-origin
    // call). By the app itself, not with oidc-client-ts's revokeTokens():
    // that one (3.5.0) refuses any 200 whose Content-Type is not JSON, and
    // RFC 7009 gives the answer no body (oidc-provider sends text/plain).
    const user = await userManager.getUser();
    if (user && user.refresh_token) {
      const endpoint = await userManager.metadataService.getRevocationEndpoint();
      const r = await fetch(endpoint, {
        method: 'POST',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({
          token: user.refresh_token,
          token_type_hint: 'refresh_token',
          client_id: config.client_id,
        }),
      });
      await r.text(); // the whole (empty) answer, before the page goes
      if (!r.ok) throw new Error(`revocation: HTTP ${r.status}`);
    }
    // signoutRedirect removes the local user and sends id_token_hint (the
    // user's id token), post_logout_redirect_uri, client_id and a state
    // (sent only when there is state data) that must come back.
    await userManager.signoutRedirect({ state: 'signed out' });
  } catch (e) {
    fail(e);
  }
});

(async () => {
  try {
    if (window.location.pathname === '/callback') {
      await userManager.signinRedirectCallback();
      // The code and state leave the address bar.
      window.history.replaceState({}, '', '/');
    } else if (new URLSearchParams(window.location.search).has('state')) {
      // Back from the end_session_endpoint.
      const response = await userManager.signoutRedirectCallback();
      window.spa.signedOut = response.userState === 'signed out';
      window.history.replaceState({}, '', '/');
    }
    await render();
  } catch (e) {
    fail(e);
  } finally {
    window.spa.ready = true;
  }
})();
