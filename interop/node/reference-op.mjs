// The reference authorization server of the interop suites: panva's
// certified oidc-provider (npm, pinned in package.json), configured as close
// to warden's contract as it goes, so that the third-party client tests are
// checked against the standard and not only against warden's habits.
//
//   node reference-op.mjs '{"port": 5123, "accounts": {"alice": "pw"},
//                           "names": {"alice": "Alice Liddell"},
//                           "registration_token": "..."}'
//
// (or the same JSON in REFERENCE_OP_CONFIG). It prints one line
// `READY <issuer>` on stdout once it listens on http://127.0.0.1:PORT.
//
// What it offers, like warden:
// - RFC 8414 metadata at /.well-known/oauth-authorization-server (and the
//   OpenID Connect Discovery document, see below);
// - the authorization code flow with PKCE required for every client (S256 is
//   the only method oidc-provider 9 knows), `iss` in every authorization
//   response (RFC 9207);
// - client_secret_basic, client_secret_post and none;
// - client_credentials, refresh tokens that rotate on every use (a reused one
//   is invalid_grant and ends the grant), revocation (RFC 7009);
// - clients are created at run time through dynamic registration (RFC 7591)
//   with the initial access token `registration_token`, the way the tests
//   create warden's with `warden clients create`;
// - OpenID Connect as warden's contract has it: discovery at
//   /.well-known/openid-configuration, id tokens signed RS256 with a key
//   made at start-up (published in the JWKS), the scopes openid, profile,
//   email and offline_access, the claims `preferred_username` and `name`
//   (profile) and `email`, `email_verified` (email) in the id token as well
//   as from /me (userinfo; warden puts them in both, so
//   `conformIdTokenClaims` is off), RP-initiated logout 1.0 (/session/end,
//   post_logout_redirect_uris registered per client) and back-channel
//   logout 1.0 advertised.
//
// Login and consent are oidc-provider's own development pages
// (devInteractions): a login form with the fields `login` and `password` and
// a consent form with one "Continue" button. **devInteractions accepts any
// login and never looks at the password** (it finishes the interaction with
// `accountId = login`). So that a wrong password is refused here as it is at
// warden, the small middleware below checks the password of the configured
// accounts before devInteractions sees the form, and `findAccount` knows only
// the configured accounts. Everything else is oidc-provider's unchanged code.
import { createServer } from 'node:http';
import { generateKeyPairSync, timingSafeEqual } from 'node:crypto';
import * as querystring from 'node:querystring';

import Provider from 'oidc-provider';

const config = JSON.parse(process.argv[2] ?? process.env.REFERENCE_OP_CONFIG ?? '{}');
const port = Number(config.port ?? 0);
const accounts = config.accounts ?? {};
// The OpenID claims of each account, as warden has them for a user created
// with `warden users create --username alice --email alice@example.com
// --full-name "Alice Liddell"` (an email set by the operator counts as
// verified there too).
const profiles = Object.fromEntries(Object.keys(accounts).map((login) => [login, {
  preferred_username: login,
  name: config.names?.[login] ?? login,
  email: `${login}@example.com`,
  email_verified: true,
}]));
if (!config.registration_token) {
  console.error('reference-op: registration_token is required');
  process.exit(2);
}

function passwordMatches(login, password) {
  if (!Object.hasOwn(accounts, login)) return false;
  const want = Buffer.from(String(accounts[login]));
  const got = Buffer.from(String(password ?? ''));
  return want.length === got.length && timingSafeEqual(want, got);
}

// Scopes the suites use: warden's user scope `me` and its service scope
// `tokens:introspect`, plus the OpenID ones (profile and email come from
// `claims` below).
const SCOPES = ['openid', 'offline_access', 'me', 'tokens:introspect'];
const CLAIMS = {
  acr: null,
  sid: null,
  auth_time: null,
  iss: null,
  openid: ['sub'],
  profile: ['preferred_username', 'name'],
  email: ['email', 'email_verified'],
};

// The id-token signing key (RS256, the one every relying party supports),
// new for every run: nothing outlives the process.
const signingKey = {
  ...generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }),
  alg: 'RS256',
  use: 'sig',
  kid: crypto.randomUUID(),
};

function listen(server, wanted) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(wanted, '127.0.0.1', () => resolve(server.address().port));
  });
}

const server = createServer();
const boundPort = await listen(server, port);
const issuer = `http://127.0.0.1:${boundPort}`;

const provider = new Provider(issuer, {
  findAccount(ctx, id) {
    if (!Object.hasOwn(accounts, id)) return undefined;
    return { accountId: id, claims: () => ({ sub: id, ...profiles[id] }) };
  },
  scopes: SCOPES,
  claims: CLAIMS,
  conformIdTokenClaims: false,
  jwks: { keys: [signingKey] },
  enabledJWA: { idTokenSigningAlgValues: ['RS256'] },
  // warden's default lifetimes (oidc-provider's own differ).
  ttl: { AuthorizationCode: 60, AccessToken: 900, RefreshToken: 2592000, Session: 1209600 },
  pkce: { required: () => true },
  // A refresh token for every client allowed the grant (oidc-provider's
  // default wants the `offline_access` scope), rotating on every use as at
  // warden (its default rotates public clients' only).
  issueRefreshToken: (ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: () => true,
  responseTypes: ['code'],
  clientDefaults: {
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'RS256',
  },
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    revocation: { enabled: true },
    introspection: { enabled: true },
    registration: { enabled: true, initialAccessToken: config.registration_token },
    // Its defaults, spelled out: the end-session endpoint asks the user to
    // confirm (a form whose buttons sit outside it, tied by `form=`).
    rpInitiatedLogout: { enabled: true },
    backchannelLogout: { enabled: true },
  },
  // Per-run random keys are fine: nothing outlives the process.
  cookies: { keys: [crypto.randomUUID()] },
});

// The password check devInteractions does not do (see the header). It reads
// the login form's body itself and hands the parsed body on; oidc-provider
// accepts an already parsed body (and prints a one-line warning about it).
provider.use(async (ctx, next) => {
  if (ctx.method === 'POST' && /^\/interaction\/[^/]+$/.test(ctx.path)
      && ctx.is('application/x-www-form-urlencoded')) {
    const chunks = [];
    for await (const chunk of ctx.req) chunks.push(chunk);
    const body = querystring.parse(Buffer.concat(chunks).toString('utf8'));
    if (body.prompt === 'login' && !passwordMatches(body.login, body.password)) {
      ctx.status = 400;
      ctx.type = 'html';
      ctx.body = '<!doctype html><title>Sign-in</title><p>Incorrect username or password</p>';
      return;
    }
    ctx.request.body = body;
  }
  await next();
});

server.on('request', provider.callback());
process.stdout.write(`READY ${issuer}\n`);

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => { server.close(() => process.exit(0)); server.closeAllConnections(); });
}
