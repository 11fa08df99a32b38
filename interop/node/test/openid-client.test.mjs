// panva's openid-client v6 (on oauth4webapi, with its strict OAuth checks) as
// an OAuth 2.1 client: RFC 8414 discovery (`algorithm: 'oauth2'`), the
// authorization code flow with PKCE S256, the expected `state` and RFC 9207's
// `iss` check, client_credentials, refresh rotation and revocation (RFC 7009).
//
// Every test runs against oidc-provider (the reference) and against warden.
// Until warden has the code flow (no `authorization_endpoint` in its
// metadata) warden's tests are skipped with the reason printed; with
// WARDEN_TEST_REQUIRE_OAUTH=1 that is a failure instead.
//
// `allowInsecureRequests` is needed only because the issuers are plain http
// on loopback; it turns off no other check.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import * as client from 'openid-client';

import { CookieJar, signIn } from '../lib/login-driver.mjs';
import { ReferenceOP, Warden } from '../lib/providers.mjs';

const AUTH = {
  client_secret_basic: (c) => client.ClientSecretBasic(c.clientSecret),
  client_secret_post: (c) => client.ClientSecretPost(c.clientSecret),
  none: () => client.None(),
};

async function configure(provider, c) {
  const config = await client.discovery(new URL(provider.base), c.clientId, {}, AUTH[c.authMethod](c), {
    algorithm: 'oauth2',
    execute: [client.allowInsecureRequests],
  });
  const metadata = config.serverMetadata();
  assert.equal(metadata.issuer, provider.base);
  assert.deepEqual(metadata.code_challenge_methods_supported, ['S256']);
  assert.equal(metadata.authorization_response_iss_parameter_supported, true);
  return config;
}

async function codeFlow(provider, config, c, { jar } = {}) {
  const codeVerifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: c.redirectUri,
    scope: c.scope,
    code_challenge: await client.calculatePKCECodeChallenge(codeVerifier),
    code_challenge_method: 'S256',
    state,
  });
  const { callback, steps } = await signIn(url, c.redirectUri, {
    usernameField: provider.usernameField,
    username: provider.username,
    password: provider.password,
    jar,
  });
  // Checks `state`, `iss` against the discovered issuer (the metadata says
  // it is always sent), and the absence of `error`; then redeems the code.
  const tokens = await client.authorizationCodeGrant(config, new URL(callback), {
    pkceCodeVerifier: codeVerifier,
    expectedState: state,
  });
  return { tokens, callback, state, steps };
}

function assertBearer(tokens, scope) {
  assert.equal(tokens.token_type.toLowerCase(), 'bearer');
  assert.ok(tokens.access_token);
  assert.ok(tokens.expiresIn() > 0);
  if (tokens.scope !== undefined) assert.deepEqual(new Set(tokens.scope.split(' ')), new Set(scope.split(' ')));
}

async function rejectsWith(promise, error) {
  await assert.rejects(promise, (e) => {
    assert.equal(e.error, error, `${e.name}: ${e.message}`);
    return true;
  });
}

// openid-client wraps oauth4webapi's finding in a ClientError whose `cause`
// names the parameter.
async function rejectsNaming(promise, parameter) {
  await assert.rejects(promise, (e) => {
    const text = `${e.message} / ${e.cause?.message ?? ''} / ${e.cause?.code ?? e.code ?? ''}`;
    assert.ok(text.includes(`"${parameter}"`), text);
    return true;
  });
}

for (const Kind of [ReferenceOP, Warden]) {
  const provider = new Kind();
  let skip = false;

  describe(provider.name, () => {
    before(async () => {
      await provider.start();
      if (provider instanceof Warden && !provider.hasCodeFlow()) {
        const reason = "warden's metadata has no authorization_endpoint: the code flow is not implemented in this binary yet";
        if (process.env.WARDEN_TEST_REQUIRE_OAUTH === '1') throw new Error(`${reason} (WARDEN_TEST_REQUIRE_OAUTH=1)`);
        skip = reason;
        console.log(`# SKIP warden: ${reason}`);
      }
    });
    after(async () => {
      await provider.stop();
    });
    const it = (name, fn) => test(name, async (t) => {
      if (skip) {
        t.skip(skip);
        return;
      }
      try {
        await fn();
      } catch (e) {
        e.message += `\n--- ${provider.name} output ---\n${provider.output.slice(-4000)}`;
        throw e;
      }
    });

    for (const authMethod of ['client_secret_basic', 'client_secret_post', 'none']) {
      it(`code flow with PKCE, state and iss checks (${authMethod})`, async () => {
        const c = await provider.createClient({ authMethod });
        const config = await configure(provider, c);
        const { tokens, callback, steps } = await codeFlow(provider, config, c);
        assert.deepEqual(steps, ['login', 'consent']);
        assert.equal(new URL(callback).searchParams.get('iss'), provider.base);
        assertBearer(tokens, c.scope);
        assert.ok(tokens.refresh_token);
      });
    }

    it('a callback with another state or issuer is refused before the code is redeemed', async () => {
      const c = await provider.createClient();
      const config = await configure(provider, c);
      const codeVerifier = client.randomPKCECodeVerifier();
      const state = client.randomState();
      const url = client.buildAuthorizationUrl(config, {
        redirect_uri: c.redirectUri,
        scope: c.scope,
        code_challenge: await client.calculatePKCECodeChallenge(codeVerifier),
        code_challenge_method: 'S256',
        state,
      });
      const { callback } = await signIn(url, c.redirectUri, provider);
      const forged = new URL(callback);
      forged.searchParams.set('iss', 'http://127.0.0.1:1');
      const redeem = (url, expectedState) => client.authorizationCodeGrant(config, url, {
        pkceCodeVerifier: codeVerifier,
        expectedState,
      });
      await rejectsNaming(redeem(forged, state), 'iss');
      await rejectsNaming(redeem(new URL(callback), client.randomState()), 'state');
      // The real callback still works: nothing above reached the token endpoint.
      const tokens = await redeem(new URL(callback), state);
      assertBearer(tokens, c.scope);
    });

    it('client_credentials', async () => {
      const c = await provider.createServiceClient();
      const config = await configure(provider, c);
      const tokens = await client.clientCredentialsGrant(config, { scope: c.scope });
      assertBearer(tokens, c.scope);
      assert.equal(tokens.refresh_token, undefined);
    });

    it('refresh rotates; the replaced refresh token is refused with invalid_grant', async () => {
      const c = await provider.createClient({ authMethod: 'none' });
      const config = await configure(provider, c);
      const { tokens: first } = await codeFlow(provider, config, c);
      const second = await client.refreshTokenGrant(config, first.refresh_token);
      assertBearer(second, c.scope);
      assert.ok(second.refresh_token);
      assert.notEqual(second.refresh_token, first.refresh_token);
      // Using the successor ends warden's grace period for the old token.
      const third = await client.refreshTokenGrant(config, second.refresh_token);
      await rejectsWith(client.refreshTokenGrant(config, first.refresh_token), 'invalid_grant');
      // Reuse detection (RFC 9700 §4.14.2) ends the grant: the newest one too.
      await rejectsWith(client.refreshTokenGrant(config, third.refresh_token), 'invalid_grant');
    });

    it('a revoked refresh token is refused', async () => {
      const c = await provider.createClient({ authMethod: 'client_secret_basic' });
      const config = await configure(provider, c);
      const { tokens } = await codeFlow(provider, config, c);
      await client.tokenRevocation(config, tokens.refresh_token, { token_type_hint: 'refresh_token' });
      await rejectsWith(client.refreshTokenGrant(config, tokens.refresh_token), 'invalid_grant');
    });

    it('a second client in the same browser gets a code without a password prompt', async () => {
      const jar = new CookieJar();
      const a = await provider.createClient();
      const b = await provider.createClient({ authMethod: 'client_secret_post' });
      const first = await codeFlow(provider, await configure(provider, a), a, { jar });
      assert.equal(first.steps[0], 'login');
      const second = await codeFlow(provider, await configure(provider, b), b, { jar });
      assert.ok(!second.steps.includes('login'), second.steps.join(','));
      assertBearer(second.tokens, b.scope);
    });
  });
}
