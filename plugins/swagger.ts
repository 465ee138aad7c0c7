import fp from 'fastify-plugin'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'

/** Which credentials each family of routes takes: the guards in plugins/auth.ts, by path. */
function securityFor (url: string): Array<Record<string, string[]>> | undefined {
  if (url.startsWith('/v1/')) return [{ adminBearer: [] }]
  if (url === '/marqeta/jit') return [{ jitBasic: [] }]
  if (url === '/marqeta/webhooks') return [{ webhookBasic: [] }]
  return undefined
}

/**
 * The OpenAPI document, generated from the routes' TypeBox schemas (registered before the routes, so that it sees
 * them), and its UI at /docs with bundled assets (no CDN), JSON at /docs/json. No credentials: the document holds
 * no data or secrets, the UI's own page and asset requests cannot carry a bearer token, and like /metrics it is
 * reachable only where nginx's operators' server block exposes it (DESIGN §9). Calls made from the UI still need
 * the token (its Authorize button).
 * @see https://github.com/fastify/fastify-swagger
 */
export default fp(async (app) => {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'JIT funding gateway',
        version: '0.1.0',
        description: 'Marqeta JIT funding gateway and webhooks (Basic auth, called by Marqeta) and the operators\' admin ' +
          'API under /v1 (bearer token). Errors everywhere are `{statusCode, error, message, code?}`. Amounts in admin ' +
          'responses are decimal strings; requests accept a number or a decimal string.'
      },
      tags: [
        { name: 'marqeta', description: 'Called by Marqeta: the JIT funding gateway and the webhooks' },
        { name: 'users', description: 'Cardholders and their balances' },
        { name: 'funds', description: 'Loads and unloads (Idempotency-Key required)' },
        { name: 'cards', description: 'Cards and their states' },
        { name: 'controls', description: 'Velocity controls and auth controls (Marqeta\'s model)' },
        { name: 'transactions', description: 'JIT decisions as recorded, with holds and archived messages' },
        { name: 'operations', description: 'Profiler snapshot and probes (no credentials; never exposed outside)' }
      ],
      components: {
        securitySchemes: {
          adminBearer: { type: 'http', scheme: 'bearer', description: 'ADMIN_TOKEN, on every /v1 route' },
          jitBasic: { type: 'http', scheme: 'basic', description: 'JIT_BASIC_AUTH_USER / JIT_BASIC_AUTH_PASSWORD (and JIT_CUSTOM_HEADER_NAME when set)' },
          webhookBasic: { type: 'http', scheme: 'basic', description: 'WEBHOOK_BASIC_AUTH_USER / WEBHOOK_BASIC_AUTH_PASSWORD (and X-Marqeta-Signature when WEBHOOK_SECRET is set)' }
        }
      }
    },
    transform: ({ schema, url }) => {
      const security = securityFor(url)
      return { url, schema: security === undefined ? schema : { ...schema, security } as typeof schema }
    }
  })
  await app.register(swaggerUi, {
    routePrefix: '/docs',
    uiConfig: { docExpansion: 'list', deepLinking: true, displayRequestDuration: true },
    staticCSP: true
  })
}, { name: 'swagger' })
