// Local OAuth 2.0 authorization server for the test-suite: the certified `oidc-provider`
// package, configured for machine-to-machine flows. Every token, introspection and revocation
// response comes from oidc-provider itself; this file only wires listeners, clients, a
// storage adapter, a `password` grant (a registered custom grant, for refresh-token tests
// without a browser) and request counters.
//
// Usage: node server.mjs CONFIG.json   (CONFIG is written by tests/authserver/fixtures.py)
// Prints ONE JSON line on stdout once every listener is up; everything else goes to stderr.
// Exits when stdin closes (the parent died) and on SIGTERM/SIGINT.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';

// oidc-provider prints its NOTICEs with console.info (stdout) and warns already at import
// time: stdout is reserved for the ready line, so route every console method to stderr
// BEFORE importing it (hence the dynamic import below).
for (const method of ['log', 'info', 'debug']) {
  console[method] = console.error;
}
const writeReadyLine = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);

const { Provider, errors } = await import('oidc-provider');

const configPath = process.argv[2];
if (!configPath) {
  console.error('usage: node server.mjs CONFIG.json');
  process.exit(2);
}
const config = JSON.parse(fs.readFileSync(configPath, 'utf8'));
// Where the listeners bind and the host name in their URLs: loopback and OS-chosen ports
// unless the config says otherwise (tests/e2e runs this server in a pod, behind a Service).
const HOST = config.listen?.host ?? '127.0.0.1';
const PUBLIC_HOST = config.listen?.publicHost ?? HOST;
const FIXED_PORTS = config.listen?.ports ?? {};

// ---------------------------------------------------------------------------------------------
// Storage: the built-in MemoryAdapter is an LRU capped at 1000 entries (long test runs would
// silently lose tokens) and shared by every Provider in the process. This one is a plain Map
// per provider, with the same expiry rule (expiresIn + clockTolerance) and a periodic sweep.
// ---------------------------------------------------------------------------------------------
const GRANTABLE = new Set([
  'AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode',
  'BackchannelAuthenticationRequest', 'PreAuthorizedCode',
]);

class MapStore {
  constructor() {
    this.entries = new Map(); // key -> { value, expiresAt }
    this.sweeper = setInterval(() => this.sweep(), 30_000);
    this.sweeper.unref();
  }

  get(key) {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt <= Date.now()) {
      this.entries.delete(key);
      return undefined;
    }
    return entry.value;
  }

  set(key, value, expiresAt = Infinity) {
    this.entries.set(key, { value, expiresAt });
  }

  delete(key) {
    this.entries.delete(key);
  }

  sweep() {
    const now = Date.now();
    for (const [key, { expiresAt }] of this.entries) {
      if (expiresAt <= now) this.entries.delete(key);
    }
  }
}

class MapAdapter {
  constructor(model, store, clockTolerance) {
    this.model = model;
    this.store = store;
    this.clockTolerance = clockTolerance;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  expiresAt(expiresIn) {
    return typeof expiresIn === 'number'
      ? Date.now() + (expiresIn + this.clockTolerance) * 1000
      : Infinity;
  }

  async upsert(id, payload, expiresIn) {
    const key = this.key(id);
    const expiresAt = this.expiresAt(expiresIn);
    if (this.model === 'Session' && payload.uid) {
      this.store.set(`sessionUid:${payload.uid}`, id, expiresAt);
    }
    if (payload.userCode) {
      this.store.set(`userCode:${payload.userCode}`, id, expiresAt);
    }
    if (GRANTABLE.has(this.model) && payload.grantId) {
      const grantKey = `grant:${payload.grantId}`;
      const members = this.store.get(grantKey) ?? new Set();
      members.add(key);
      const previous = this.store.entries.get(grantKey)?.expiresAt ?? 0;
      this.store.set(grantKey, members, Math.max(previous, expiresAt));
    }
    this.store.set(key, payload, expiresAt);
  }

  async find(id) {
    return this.store.get(this.key(id));
  }

  async findByUid(uid) {
    const id = this.store.get(`sessionUid:${uid}`);
    return id === undefined ? undefined : this.find(id);
  }

  async findByUserCode(userCode) {
    const id = this.store.get(`userCode:${userCode}`);
    return id === undefined ? undefined : this.find(id);
  }

  async consume(id) {
    const payload = this.store.get(this.key(id));
    if (payload) payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    this.store.delete(this.key(id));
  }

  // oidc-provider calls this on every grantable model; each call removes the whole grant's
  // tokens (same semantics as the built-in adapter).
  async revokeByGrantId(grantId) {
    const grantKey = `grant:${grantId}`;
    const members = this.store.get(grantKey);
    if (members) {
      for (const key of members) this.store.delete(key);
    }
    this.store.delete(grantKey);
  }
}

// ---------------------------------------------------------------------------------------------
// Request counters (instrumentation only): path, listener + path, client_id + path.
// ---------------------------------------------------------------------------------------------
const counters = new Map();
const bump = (key) => counters.set(key, (counters.get(key) ?? 0) + 1);
const COUNTERS_PATH = '/__test__/counters';

function countingMiddleware(listenerOf) {
  return async function count(ctx, next) {
    const listener = listenerOf(ctx);
    if (ctx.path === COUNTERS_PATH) {
      if (listener === 'main' && ctx.method === 'GET') {
        ctx.set('cache-control', 'no-store');
        ctx.body = Object.fromEntries([...counters].sort(([a], [b]) => a.localeCompare(b)));
        return;
      }
      ctx.throw(404);
    }
    bump(ctx.path);
    bump(`listener=${listener} ${ctx.path}`);
    try {
      await next();
    } finally {
      // Set by oidc-provider once the request named a client it knows (even if the client
      // then failed to authenticate).
      const clientId = ctx.oidc?.entities?.Client?.clientId;
      if (clientId) bump(`client=${clientId} ${ctx.path}`);
    }
  };
}

// ---------------------------------------------------------------------------------------------
// mTLS helpers (features.mTLS): the peer certificate of the TLS socket the request came on.
// ---------------------------------------------------------------------------------------------
function peerCertificate(ctx) {
  const { socket } = ctx;
  if (typeof socket?.getPeerX509Certificate !== 'function') return undefined;
  return socket.getPeerX509Certificate() ?? undefined;
}

// RFC 4514 string -> list of "TYPE=value" (most specific RDN first), unescaped.
function parseRfc4514(dn) {
  const parts = [];
  let current = '';
  for (let i = 0; i < dn.length; i += 1) {
    const ch = dn[i];
    if (ch === '\\' && i + 1 < dn.length) {
      current += dn[i + 1];
      i += 1;
    } else if (ch === ',') {
      parts.push(current);
      current = '';
    } else {
      current += ch;
    }
  }
  parts.push(current);
  return parts.map(normalizeAva);
}

function normalizeAva(ava) {
  const i = ava.indexOf('=');
  return `${ava.slice(0, i).trim().toUpperCase()}=${ava.slice(i + 1).trim()}`;
}

// X509Certificate#subject lists RDNs one per line in certificate order (least specific first);
// RFC 4514 lists them in reverse.
function certificateSubjectDn(cert) {
  return cert.subject.split('\n').filter(Boolean).reverse()
    .map((ava) => normalizeAva(ava.replace(/\\(.)/g, '$1')));
}

function certificateSubjectMatches(ctx, property, expected) {
  const cert = peerCertificate(ctx);
  if (!cert) return false;
  switch (property) {
    case 'tls_client_auth_subject_dn': {
      const actual = certificateSubjectDn(cert);
      const wanted = parseRfc4514(expected);
      return actual.length === wanted.length && actual.every((ava, i) => ava === wanted[i]);
    }
    case 'tls_client_auth_san_dns':
      return cert.checkHost(expected, { subject: 'never' }) !== undefined;
    case 'tls_client_auth_san_email':
      return cert.checkEmail(expected, { subject: 'never' }) !== undefined;
    case 'tls_client_auth_san_ip':
      return cert.checkIP(expected) !== undefined;
    case 'tls_client_auth_san_uri':
      return (cert.subjectAltName ?? '').split(', ').includes(`URI:${expected}`);
    default:
      return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Account + password grant.
// ---------------------------------------------------------------------------------------------
const { user } = config;

async function findAccount(_ctx, sub) {
  if (sub !== user.username) return undefined;
  return {
    accountId: sub,
    async claims() {
      return { sub, ...user.claims };
    },
  };
}

function passwordGrantHandler(oidcScopes, getResourceServerInfo) {
  // Registered with provider.registerGrantType: called with the Koa ctx after oidc-provider
  // authenticated the client, checked the client may use grant_type=password, rejected
  // duplicate parameters and validated the scope syntax.
  return async function passwordGrant(ctx) {
    const { client, params, provider } = ctx.oidc;
    for (const name of ['username', 'password']) {
      if (!params[name]) throw new errors.InvalidRequest(`missing required parameter '${name}'`);
    }
    if (params.username !== user.username || params.password !== user.password) {
      throw new errors.InvalidGrant('invalid resource owner credentials');
    }
    const account = await findAccount(ctx, params.username);
    ctx.oidc.entity('Account', account);

    // Same rule as oidc-provider's own grants: unknown scopes are silently dropped; resource
    // scopes only count together with a `resource` parameter.
    const requested = [...new Set(params.scope ? params.scope.split(' ') : [])];
    const openidScope = requested.filter((s) => oidcScopes.has(s));
    let resourceServer;
    let resourceScope = [];
    if (params.resource !== undefined) {
      if (Array.isArray(params.resource)) {
        throw new errors.InvalidTarget('only a single resource indicator value is supported for this grant type');
      }
      const info = await getResourceServerInfo(ctx, params.resource, client);
      resourceServer = new provider.ResourceServer(params.resource, info);
      resourceScope = requested.filter((s) => resourceServer.scopes.has(s));
    }

    const grant = new provider.Grant({ accountId: account.accountId, clientId: client.clientId });
    if (openidScope.length) grant.addOIDCScope(openidScope.join(' '));
    if (resourceServer && resourceScope.length) {
      grant.addResourceScope(params.resource, resourceScope.join(' '));
    }
    const grantId = await grant.save();
    ctx.oidc.entity('Grant', grant);

    const at = new provider.AccessToken({
      accountId: account.accountId, client, grantId, gty: 'password',
    });
    if (resourceServer) {
      at.resourceServer = resourceServer;
      at.scope = resourceScope.join(' ') || undefined;
    } else {
      at.scope = openidScope.join(' ') || undefined;
    }
    ctx.oidc.entity('AccessToken', at);
    const accessToken = await at.save();

    let refreshToken;
    if (client.grantTypeAllowed('refresh_token')) {
      const rt = new provider.RefreshToken({
        accountId: account.accountId,
        client,
        grantId,
        gty: 'password',
        resource: resourceServer ? params.resource : undefined,
        rotations: 0,
        scope: [...openidScope, ...resourceScope].join(' ') || undefined,
      });
      ctx.oidc.entity('RefreshToken', rt);
      refreshToken = await rt.save();
    }

    ctx.body = Object.fromEntries(Object.entries({
      access_token: accessToken,
      expires_in: at.expiration,
      refresh_token: refreshToken,
      scope: at.scope,
      token_type: at.tokenType,
    }).filter(([, value]) => value !== undefined));
  };
}

// ---------------------------------------------------------------------------------------------
// Provider factory.
// ---------------------------------------------------------------------------------------------
function signingJwks() {
  // oidc-provider signs ID Tokens (refresh_token grant with `openid`); without `jwks` it falls
  // back to a published development keystore and warns.
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { keys: [{ ...privateKey.export({ format: 'jwk' }), kid: 'authserver-rs256', alg: 'RS256', use: 'sig' }] };
}

function buildProvider(issuer, { clients, mtls, lean = false }) {
  const { resource } = config;
  const ttlOverrides = config.ttlOverrides ?? {};
  const ttl = (model, fallback) => function ttlFor(_ctx, token, client) {
    return ttlOverrides[client?.clientId]?.[model]
      ?? token?.resourceServer?.accessTokenTTL
      ?? fallback;
  };

  async function getResourceServerInfo(_ctx, indicator) {
    if (indicator !== resource.identifier) throw new errors.InvalidTarget();
    return { audience: resource.identifier, scope: resource.scope, accessTokenFormat: 'opaque' };
  }

  const clockTolerance = config.clockTolerance ?? 0;
  const store = new MapStore();
  const features = {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    // `lean`: a server with neither endpoint, as Entra ID and Google have no revocation.
    introspection: { enabled: !lean },
    revocation: { enabled: !lean },
    resourceIndicators: {
      enabled: true,
      getResourceServerInfo,
      // refresh_token grant without `resource`: reuse the resource the refresh token was
      // issued for (otherwise oidc-provider issues a userinfo-only token when `openid` is in
      // the scope).
      useGrantedResource: async () => true,
    },
  };
  if (mtls) {
    features.mTLS = {
      enabled: true,
      tlsClientAuth: true,
      getCertificate: peerCertificate,
      certificateAuthorized: (ctx) => ctx.socket?.authorized === true,
      certificateSubjectMatches,
    };
  }

  const provider = new Provider(issuer, {
    adapter: (model) => new MapAdapter(model, store, clockTolerance),
    clients,
    clientAuthMethods: [
      'client_secret_basic', 'client_secret_post', 'client_secret_jwt', 'private_key_jwt', 'none',
      ...(mtls ? ['tls_client_auth'] : []),
    ],
    enabledJWA: {
      clientAuthSigningAlgValues: [
        'HS256', 'HS384', 'HS512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512',
        'ES256', 'ES384', 'ES512', 'Ed25519', 'EdDSA',
      ],
    },
    clockTolerance,
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username'],
    },
    scopes: ['openid', 'offline_access'],
    discovery: mtls ? { mtls_endpoint_aliases: mtls.aliases } : {},
    features,
    findAccount,
    jwks: signingJwks(),
    rotateRefreshToken: true,
    ttl: {
      AccessToken: ttl('AccessToken', 60 * 60),
      ClientCredentials: ttl('ClientCredentials', 10 * 60),
      RefreshToken: ttl('RefreshToken', 14 * 24 * 60 * 60),
      Grant: 14 * 24 * 60 * 60,
      IdToken: 60 * 60,
      Interaction: 60 * 60,
      Session: 14 * 24 * 60 * 60,
    },
  });

  // RFC 6749 §5.1 makes expires_in optional: for the clients listed in `omitExpiresIn`,
  // token responses leave it out (the token itself still expires as configured).
  const omitExpiresIn = new Set(config.omitExpiresIn ?? []);
  provider.use(async (ctx, next) => {
    await next();
    const clientId = ctx.oidc?.entities?.Client?.clientId;
    if (ctx.oidc?.route === 'token' && omitExpiresIn.has(clientId) && ctx.body?.expires_in) {
      delete ctx.body.expires_in;
    }
  });

  // openid, offline_access + the scopes that `claims` defines (profile, email).
  const oidcScopes = new Set(['openid', 'offline_access', 'profile', 'email']);
  provider.registerGrantType(
    'password',
    passwordGrantHandler(oidcScopes, getResourceServerInfo),
    ['username', 'password', 'scope', 'resource'],
  );

  // Errors returned to clients are logged (stderr) to make failing tests easy to read.
  for (const event of ['grant.error', 'introspection.error', 'revocation.error', 'discovery.error']) {
    provider.on(event, (ctx, err) => {
      const clientId = ctx.oidc?.entities?.Client?.clientId ?? '-';
      // error_detail is the reason oidc-provider keeps out of the response (e.g. which
      // client-assertion check failed); it never contains a secret.
      const detail = err.error_detail ? ` (${err.error_detail})` : '';
      console.error(`[${issuer}] ${event} client=${clientId}: ${err.error ?? err.name}: ${err.error_description ?? err.message}${detail}`);
    });
  }
  provider.on('server_error', (_ctx, err) => console.error(`[${issuer}] server_error:`, err));
  return provider;
}

// ---------------------------------------------------------------------------------------------
// Listeners: bind all four on port 0 first (issuers contain the ports), then build the apps.
// ---------------------------------------------------------------------------------------------
const tls = {
  cert: fs.readFileSync(config.tls.cert),
  key: fs.readFileSync(config.tls.key),
  ca: fs.readFileSync(config.tls.ca),
};

const handlers = {};
function dispatch(name) {
  return (req, res) => {
    req.authserverListener = name;
    handlers[name](req, res);
  };
}

const servers = {
  main: https.createServer({ cert: tls.cert, key: tls.key }, dispatch('main')),
  mtls: https.createServer({
    cert: tls.cert, key: tls.key, ca: tls.ca, requestCert: true, rejectUnauthorized: false,
  }, dispatch('mtls')),
  http: http.createServer(dispatch('http')),
  mismatch: http.createServer(dispatch('mismatch')),
  lean: https.createServer({ cert: tls.cert, key: tls.key }, dispatch('lean')),
};

const ports = Object.fromEntries(await Promise.all(Object.entries(servers).map(
  ([name, server]) => new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(FIXED_PORTS[name] ?? 0, HOST, () => resolve([name, server.address().port]));
  }),
)));

const issuer = `https://${PUBLIC_HOST}:${ports.main}`;
const mtlsBase = `https://${PUBLIC_HOST}:${ports.mtls}`;
const httpIssuer = `http://${PUBLIC_HOST}:${ports.http}`;
const mismatchUrl = `http://${PUBLIC_HOST}:${ports.mismatch}`;
const leanIssuer = `https://${PUBLIC_HOST}:${ports.lean}`;

const main = buildProvider(issuer, {
  clients: config.clients,
  mtls: {
    aliases: {
      token_endpoint: `${mtlsBase}/token`,
      introspection_endpoint: `${mtlsBase}/token/introspection`,
      revocation_endpoint: `${mtlsBase}/token/revocation`,
    },
  },
});
const second = buildProvider(httpIssuer, { clients: config.httpClients, mtls: undefined });
const lean = buildProvider(leanIssuer, { clients: config.clients, mtls: undefined, lean: true });

const listenerOf = (ctx) => ctx.req.authserverListener ?? 'unknown';
main.use(countingMiddleware(listenerOf));
second.use(countingMiddleware(listenerOf));
lean.use(countingMiddleware(listenerOf));

// Static clients are validated lazily by oidc-provider; load them now so that a bad client
// definition fails start-up instead of a test.
for (const [provider, clients] of [[main, config.clients], [second, config.httpClients]]) {
  for (const { client_id: clientId } of clients) {
    try {
      await provider.Client.find(clientId);
    } catch (err) {
      console.error(`invalid client ${clientId} for ${provider.issuer}: ${err.error_description ?? err.message}`);
      process.exit(1);
    }
  }
}

const mainCallback = main.callback();
handlers.main = mainCallback;
handlers.mtls = mainCallback;
handlers.mismatch = mainCallback;
handlers.http = second.callback();
handlers.lean = lean.callback();

// ---------------------------------------------------------------------------------------------
// Lifecycle.
// ---------------------------------------------------------------------------------------------
let stopping = false;
function shutdown(reason) {
  if (stopping) return;
  stopping = true;
  console.error(`authserver stopping: ${reason}`);
  for (const server of Object.values(servers)) {
    server.close();
    server.closeAllConnections();
  }
  process.exit(0);
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
process.stdin.on('end', () => shutdown('stdin closed'));
process.stdin.on('close', () => shutdown('stdin closed'));
process.stdin.on('error', () => shutdown('stdin error'));
process.stdin.resume();

writeReadyLine({
  ready: true,
  pid: process.pid,
  issuer,
  mtls_base: mtlsBase,
  http_issuer: httpIssuer,
  mismatch_url: mismatchUrl,
  lean_issuer: leanIssuer,
  ports,
});
