import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import { STATUS_CODES } from 'node:http'
import { randomUUID } from 'node:crypto'
import type { Config } from './config.js'
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
import healthRoutes from '../routes/health.js'
import jitRoutes from '../routes/jit.js'
import webhookRoutes from '../routes/webhooks.js'
import adminRoutes from '../routes/admin/index.js'

export interface BuildOptions {
  logger?: FastifyServerOptions['logger']
}

export function loggerOptions (config: Config): FastifyServerOptions['logger'] {
  return {
    level: config.LOG_LEVEL,
    redact: { paths: ['req.headers.authorization', 'req.headers["x-marqeta-signature"]', 'req.headers.cookie'], censor: '[redacted]' },
    serializers: {
      req: (req) => ({ method: req.method, url: req.url, headers: req.headers, remoteAddress: req.ip })
    }
  }
}

/** Builds the whole service from a validated config; never listens (src/server.ts does). */
export async function buildApp (config: Config, options: BuildOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    logger: options.logger ?? loggerOptions(config),
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

  await app.register(configPlugin, { config })
  await app.register(postgresPlugin)
  await app.register(redisPlugin)
  await app.register(mongodbPlugin)
  await app.register(rabbitmqPlugin)
  await app.register(metricsPlugin)
  await app.register(authPlugin)
  await app.register(healthPlugin)
  await app.register(cachePlugin)
  await app.register(profilerPlugin)
  await app.register(workersPlugin)

  await app.register(healthRoutes)
  await app.register(jitRoutes)
  await app.register(webhookRoutes)
  await app.register(adminRoutes, { prefix: '/v1' })
  return app
}
