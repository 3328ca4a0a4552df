// Loopback OAuth 2.0 authorization server for the mail test harness, built on
// oidc-provider (npm). Usage: node server.mjs CONFIG.json
// CONFIG.json (written by start.sh from oauth-as.json.in) holds the issuer,
// the listen port, the signing key's PEM path and kid, the mail resource,
// lifetimes, clients and the accounts file (email -> password).
import { readFileSync } from 'node:fs';
import { createPrivateKey, randomBytes } from 'node:crypto';
import Provider from 'oidc-provider';

const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const jwk = { ...createPrivateKey(readFileSync(cfg.signing_key_pem)).export({ format: 'jwk' }),
  kid: cfg.signing_kid, alg: 'ES256', use: 'sig' };
const accounts = JSON.parse(readFileSync(cfg.accounts_file, 'utf8')); // { "alice@example.test": "alicepw" }
const mailResource = cfg.resource; // audience of mail access tokens

const provider = new Provider(cfg.issuer, {
  clients: cfg.clients,
  clientDefaults: { id_token_signed_response_alg: 'ES256' }, // the only key is EC P-256
  jwks: { keys: [jwk] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  findAccount: async (_ctx, id) => (accounts[id] === undefined ? undefined
    : { accountId: id, claims: async () => ({ sub: id, email: id }) }),
  claims: { openid: ['sub'], email: ['email'] },
  scopes: ['openid', 'offline_access', 'email'],
  features: {
    devInteractions: { enabled: false }, // our own login + scripted consent below
    revocation: { enabled: true },
    introspection: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // Clients need not send resource=: every token is for the mail resource
      defaultResource: async () => mailResource,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (_ctx, indicator) => {
        if (indicator !== mailResource) throw new Provider.errors.InvalidTarget();
        return {
          scope: cfg.resource_scopes.join(' '),
          audience: mailResource,
          accessTokenTTL: cfg.access_token_ttl,
          // "jwt": Dovecot validates locally; "opaque": Dovecot asks /token/introspection
          accessTokenFormat: cfg.access_token_format,
          ...(cfg.access_token_format === 'jwt' ? { jwt: { sign: { alg: 'ES256' } } } : {}),
        };
      },
    },
  },
  // Dovecot 2.3 takes the login name from the "email" claim (username_attribute)
  extraTokenClaims: async (_ctx, token) => (token.accountId ? { email: token.accountId } : undefined),
  formats: {
    customizers: {
      // Dovecot 2.3's JWT check insists on typ "JWT" (RFC 9068 says "at+jwt")
      jwt: async (_ctx, _token, jwt) => { jwt.header = { typ: 'JWT' }; },
    },
  },
  // a refresh token for every code grant, no offline_access/prompt=consent dance
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: () => cfg.rotate_refresh_token,
  pkce: { required: () => true },
  ttl: {
    AccessToken: cfg.access_token_ttl,
    RefreshToken: cfg.refresh_token_ttl,
    AuthorizationCode: 60,
    Interaction: 600,
    Session: 3600,
    Grant: cfg.refresh_token_ttl,
  },
  // errors of the browser-facing endpoints as JSON text (default is an HTML page)
  renderError: async (ctx, out) => { ctx.type = 'json'; ctx.body = out; },
  interactions: { url: async (_ctx, interaction) => `/interaction/${interaction.uid}` },
});

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
async function formBody(req) {
  let raw = '';
  for await (const chunk of req) raw += chunk;
  return new URLSearchParams(raw);
}

// Login (checks the account's password) and consent (granted automatically:
// "scripted consent"; post deny=1 to the login form to get access_denied).
provider.use(async (ctx, next) => {
  const m = ctx.path.match(/^\/interaction\/([\w-]+)(\/login)?$/);
  if (!m) return next();
  const { req, res } = ctx;
  const interaction = await provider.interactionDetails(req, res);
  const { prompt, params, uid } = interaction;
  ctx.set('cache-control', 'no-store');
  if (ctx.method === 'GET' && prompt.name === 'login') {
    ctx.type = 'html';
    ctx.body = `<!doctype html><title>Sign in</title><form method="post" action="/interaction/${esc(uid)}/login">
<input name="login" value="${esc(params.login_hint || '')}"><input name="password" type="password">
<button>Sign in</button></form>`;
    return undefined;
  }
  if (ctx.method === 'POST' && m[2] && prompt.name === 'login') {
    const form = await formBody(req);
    const login = (form.get('login') || '').toLowerCase();
    if (form.get('deny')) {
      ctx.respond = false;
      return provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'user denied' },
        { mergeWithLastSubmission: false });
    }
    if (accounts[login] === undefined || accounts[login] !== form.get('password')) {
      ctx.status = 401; ctx.type = 'text'; ctx.body = 'invalid login or password';
      return undefined;
    }
    ctx.respond = false;
    return provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
  }
  if (prompt.name === 'consent') {
    const { accountId } = interaction.session;
    const grant = interaction.grantId ? await provider.Grant.find(interaction.grantId)
      : new provider.Grant({ accountId, clientId: params.client_id });
    const d = prompt.details;
    if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
    if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(d.missingResourceScopes || {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    ctx.respond = false;
    return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  }
  ctx.status = 400; ctx.type = 'text'; ctx.body = `unexpected interaction ${prompt.name} ${ctx.method}`;
  return undefined;
});

provider.on('server_error', (_ctx, err) => console.error('server_error', err));
// one line per token issued, so tests can count refreshes: "grant.success refresh_token"
provider.on('grant.success', (ctx) => console.log('grant.success', ctx.oidc.params.grant_type));
for (const ev of ['authorization.error', 'grant.error', 'revocation.error', 'introspection.error']) {
  provider.on(ev, (_ctx, err) => console.error(ev, err.message, err.error_description || ''));
}
provider.listen(cfg.port, '127.0.0.1', () => {
  console.log(`oauth-as listening on ${cfg.issuer} pid ${process.pid}`);
});
// all state is in memory and thrown away: exit at once (no wait for keep-alive clients)
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
