// The reference authorization server of the interop suites: panva's
// certified oidc-provider (npm, pinned in package.json), configured as close
// to warden's contract as it goes, so that the third-party client tests are
// checked against the standard and not only against warden's habits.
//
//   node reference-op.mjs '{"port": 5123, "accounts": {"alice": "pw"},
//                           "registration_token": "..."}'
//
// (or the same JSON in REFERENCE_OP_CONFIG). It prints one line
// `READY <issuer>` on stdout once it listens on http://127.0.0.1:PORT.
//
// What it offers, like warden:
// - RFC 8414 metadata at /.well-known/oauth-authorization-server (and the
//   OpenID one, which the suites do not use);
// - the authorization code flow with PKCE required for every client (S256 is
//   the only method oidc-provider 9 knows), `iss` in every authorization
//   response (RFC 9207);
// - client_secret_basic, client_secret_post and none;
// - client_credentials, refresh tokens that rotate on every use (a reused one
//   is invalid_grant and ends the grant), revocation (RFC 7009);
// - clients are created at run time through dynamic registration (RFC 7591)
//   with the initial access token `registration_token`, the way the tests
//   create warden's with `warden clients create`.
// - OpenID's `profile` and `email` scopes with the claims warden gives them
//   (`preferred_username`, `name`, `email`, `email_verified`), in the id
//   token and at /userinfo, CORS for public clients' redirect-URI origins
//   and RP-initiated logout (oidc-provider's defaults; it always asks on a
//   page before it signs out): the browser SPA test uses them.
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
import { timingSafeEqual } from 'node:crypto';
import * as querystring from 'node:querystring';

import Provider from 'oidc-provider';

const config = JSON.parse(process.argv[2] ?? process.env.REFERENCE_OP_CONFIG ?? '{}');
const port = Number(config.port ?? 0);
const accounts = config.accounts ?? {};
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
// `tokens:introspect`, plus the two OpenID ones oidc-provider always knows,
// and OpenID's `profile` and `email` (the browser SPA test, with the claims
// warden gives them: CLAIMS below).
const SCOPES = ['openid', 'offline_access', 'me', 'tokens:introspect', 'profile', 'email'];
const CLAIMS = {
  openid: ['sub'],
  profile: ['preferred_username', 'name'],
  email: ['email', 'email_verified'],
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
    return {
      accountId: id,
      claims: () => ({
        sub: id, preferred_username: id, name: id, email: `${id}@example.com`, email_verified: false,
      }),
    };
  },
  scopes: SCOPES,
  claims: CLAIMS,
  // As at warden, the id token itself carries the claims of the granted
  // scopes (oidc-provider's default keeps them for /userinfo when an access
  // token is issued).
  conformIdTokenClaims: false,
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
  },
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    revocation: { enabled: true },
    introspection: { enabled: true },
    registration: { enabled: true, initialAccessToken: config.registration_token },
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
