import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import { STATUS_CODES } from 'node:http'
import { randomUUID } from 'node:crypto'
import type { Config } from './config.js'
import type { Topology } from './broker.js'
import configPlugin from '../plugins/config.js'
import postgresPlugin from '../plugins/postgres.js'
import redisPlugin from '../plugins/redis.js'
import mongodbPlugin from '../plugins/mongodb.js'
import rabbitmqPlugin from '../plugins/rabbitmq.js'
import metricsPlugin from '../plugins/metrics.js'
import authPlugin from '../plugins/auth.js'
import healthPlugin from '../plugins/health.js'
import cachePlugin from '../plugins/cache.js'
import profilerPlugin from '../plugins/profiler.js'
import workersPlugin from '../plugins/workers.js'
import relayWakeupPlugin from '../plugins/relay-wakeup.js'
import swaggerPlugin from '../plugins/swagger.js'
import healthRoutes from '../routes/health.js'
import jitRoutes from '../routes/jit.js'
import webhookRoutes from '../routes/webhooks.js'
import adminRoutes from '../routes/admin/index.js'

export interface BuildOptions {
  logger?: FastifyServerOptions['logger']
  /** Where the service's own logger (loggerOptions) writes instead of stdout: tests read what production would log. */
  logStream?: { write: (line: string) => void }
  /** The exchange and work queues (default: DESIGN §7's); tests run on their own so that no other instance consumes them. */
  topology?: Topology
}

/** Secrets shorter than this are not scrubbed from log text: they would mask ordinary words (and protect nothing). */
const MIN_SCRUBBED_SECRET = 6

/** Every configured secret value, in the forms it could take in a log line. */
export function secretValues (config: Config): string[] {
  const values = [config.ADMIN_TOKEN, config.JIT_BASIC_AUTH_PASSWORD, config.WEBHOOK_BASIC_AUTH_PASSWORD, config.WEBHOOK_SECRET,
    config.JIT_CUSTOM_HEADER_VALUE]
  for (const [user, password] of [[config.JIT_BASIC_AUTH_USER, config.JIT_BASIC_AUTH_PASSWORD], [config.WEBHOOK_BASIC_AUTH_USER, config.WEBHOOK_BASIC_AUTH_PASSWORD]]) {
    values.push(Buffer.from(`${user}:${password}`).toString('base64'))
  }
  for (const url of [config.DATABASE_URL, config.REDIS_URL, config.RABBITMQ_URL, config.MONGO_URL]) {
    try {
      const password = new URL(url).password
      values.push(password, decodeURIComponent(password))
    } catch {}
  }
  const forms = values.filter((v): v is string => v !== undefined && v.length >= MIN_SCRUBBED_SECRET)
    .flatMap((v) => [v, JSON.stringify(v).slice(1, -1)])
  // Longest first, so that a secret containing another is replaced whole.
  return [...new Set(forms)].sort((a, b) => b.length - a.length)
}

export function loggerOptions (config: Config): FastifyServerOptions['logger'] {
  const header = (name: string): string => `req.headers[${JSON.stringify(name.toLowerCase())}]`
  const headers = ['authorization', 'proxy-authorization', 'x-marqeta-signature', 'cookie']
  if (config.JIT_CUSTOM_HEADER_NAME !== undefined) headers.push(config.JIT_CUSTOM_HEADER_NAME)
  const secrets = secretValues(config)
  const pattern = secrets.length === 0 ? undefined : new RegExp(secrets.map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'), 'g')
  return {
    level: config.LOG_LEVEL,
    redact: { paths: headers.map(header), censor: '[redacted]' },
    serializers: {
      req: (req) => ({ method: req.method, url: req.url, headers: req.headers, remoteAddress: req.ip })
    },
    // Redaction by path covers the headers; this catches a secret value wherever else it lands (an error message
    // quoting a URL, a header echoed in a URL): the finished line is scrubbed before it is written.
    ...(pattern === undefined ? {} : { hooks: { streamWrite: (line: string) => line.replace(pattern, '[redacted]') } })
  }
}

/** Builds the service of `config.ROLE` from a validated config; never listens (src/server.ts does). */
export async function buildApp (config: Config, options: BuildOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    logger: options.logger ?? (options.logStream === undefined
      ? loggerOptions(config)
      : { ...(loggerOptions(config) as object), stream: options.logStream }),
    requestIdHeader: 'x-request-id',
    genReqId: () => randomUUID(),
    bodyLimit: 256 * 1024,
    return503OnClosing: true,
    ajv: { customOptions: { allErrors: false } }
  })

  app.setErrorHandler((err: Error & { statusCode?: number, code?: string, validation?: unknown }, request, reply) => {
    const statusCode = err.statusCode !== undefined && err.statusCode >= 400 ? err.statusCode : 500
    if (statusCode >= 500) request.log.error({ err }, 'request failed')
    else request.log.info({ err: err.message, code: err.code }, 'request rejected')
    const body: Record<string, unknown> = {
      statusCode,
      error: STATUS_CODES[statusCode] ?? 'Error',
      message: statusCode < 500 ? err.message : STATUS_CODES[statusCode] ?? 'Internal Server Error'
    }
    if (err.code !== undefined && statusCode < 500) body.code = err.code
    return reply.code(statusCode).send(body)
  })

  // A worker (DESIGN §7, roles) serves only the probes and /metrics: no public route, credentials or API docs.
  const servesApi = config.ROLE !== 'worker'
  await app.register(configPlugin, { config })
  await app.register(postgresPlugin)
  await app.register(redisPlugin)
  await app.register(mongodbPlugin)
  await app.register(rabbitmqPlugin, { topology: options.topology })
  await app.register(metricsPlugin)
  if (servesApi) await app.register(authPlugin)
  await app.register(healthPlugin)
  await app.register(cachePlugin)
  if (servesApi) await app.register(profilerPlugin)
  await app.register(workersPlugin)
  await app.register(relayWakeupPlugin)
  // Before the routes: the OpenAPI document is built from the routes registered after it.
  if (servesApi) await app.register(swaggerPlugin)

  await app.register(healthRoutes)
  if (servesApi) {
    await app.register(jitRoutes)
    await app.register(webhookRoutes)
    await app.register(adminRoutes, { prefix: '/v1' })
  }
  return app
}
