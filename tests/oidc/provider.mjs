// A real OpenID Connect provider (npm oidc-provider 8.8.1) for bastille's SSO tests.
// Static clients and test users; device flow on; the dev login/consent pages are
// scripted by the tests with plain HTTP form posts (any password is accepted: this is
// a test IdP). Usage: PORT=NNNN node provider.mjs  -> prints "READY <issuer>" on stdout.
import crypto from 'node:crypto';
import Provider from 'oidc-provider';

const port = Number(process.env.PORT || 0);
const issuer = `http://127.0.0.1:${port}`;
const ttl = Number(process.env.DEVICE_CODE_TTL || 600);
// REDIRECT_URIS (space-separated): also allow the authorization code flow for 'bastille'
// (the web endpoint's approver sign-in, PUBLIC_URL/oidc/callback)
const redirects = (process.env.REDIRECT_URIS || '').split(' ').filter(Boolean);

const USERS = {
  bob: { groups: ['eng'] },
  alice: { groups: ['ops', 'eng'] },
  carol: { groups: [] },
  dave: { groups: ['ops'] },
};

const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'test-rs256', use: 'sig', alg: 'RS256' };

const deviceGrant = 'urn:ietf:params:oauth:grant-type:device_code';
const configuration = {
  clients: [
    {
      client_id: 'bastille', client_secret: 'bastille-test-secret',
      grant_types: redirects.length ? [deviceGrant, 'authorization_code'] : [deviceGrant],
      response_types: redirects.length ? ['code'] : [], redirect_uris: redirects,
      token_endpoint_auth_method: 'client_secret_post',
    },
    {
      client_id: 'other-app', client_secret: 'other-test-secret',
      grant_types: [deviceGrant], response_types: [], redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_post',
    },
  ],
  jwks: { keys: [jwk] },
  features: { deviceFlow: { enabled: true }, devInteractions: { enabled: true } },
  claims: { openid: ['sub'], profile: ['preferred_username', 'name'], groups: ['groups'] },
  scopes: ['openid', 'profile', 'groups', 'offline_access'],
  conformIdTokenClaims: false,
  ttl: { DeviceCode: ttl, IdToken: 3600, AccessToken: 3600 },
  cookies: { keys: ['bastille-test-cookie-key'] },
  async findAccount(ctx, id) {
    if (!Object.hasOwn(USERS, id)) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, preferred_username: id, name: id, groups: USERS[id].groups };
      },
    };
  },
};

const provider = new Provider(issuer, configuration);
const server = provider.listen(port, '127.0.0.1', () => {
  process.stdout.write(`READY ${issuer}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
