import fp from 'fastify-plugin'
import underPressure from '@fastify/under-pressure'
import { relayLag } from '../src/event-relay.js'
import { embeddedPersistence, isEmbeddedMongo } from '../src/embedded-mongo.js'

export interface DependencyStatus {
  status: 'up' | 'down'
  latency_ms?: number
  error?: string
  [detail: string]: unknown
}

export interface HealthReport {
  status: 'ok' | 'degraded' | 'down'
  postgres: DependencyStatus
  redis: DependencyStatus
  mongodb: DependencyStatus
  rabbitmq: DependencyStatus
}

declare module 'fastify' {
  interface FastifyInstance {
    checkHealth: () => Promise<HealthReport>
    postgresUsable: () => Promise<boolean>
  }
}

const CHECK_TIMEOUT_MS = 1000

async function timed (check: () => Promise<Record<string, unknown> | void>): Promise<DependencyStatus> {
  const started = performance.now()
  let timer: NodeJS.Timeout | undefined
  try {
    const timeout = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error('timed out')), CHECK_TIMEOUT_MS) })
    const details = await Promise.race([check(), timeout])
    return { status: 'up', latency_ms: round(performance.now() - started), ...(details ?? {}) }
  } catch (err) {
    return { status: 'down', latency_ms: round(performance.now() - started), error: (err as Error).message }
  } finally {
    clearTimeout(timer)
  }
}

const round = (ms: number): number => Math.round(ms * 100) / 100

/**
 * Dependency checks for /health and /ready, and @fastify/under-pressure for load shedding. Only PostgreSQL and
 * process pressure make the service unready; under-pressure gets no healthCheck because a failing one would turn
 * every route, the JIT route included, into 503 (TOOLING.md).
 */
export default fp(async (app) => {
  const { config } = app
  await app.register(underPressure, {
    maxEventLoopDelay: 1000,
    maxHeapUsedBytes: 4 * 1024 ** 3,
    maxRssBytes: 8 * 1024 ** 3,
    retryAfter: 1
  })

  app.decorate('postgresUsable', async () => {
    const status = await timed(async () => { await app.db.query('SELECT 1') })
    return status.status === 'up'
  })

  // What the embedded server keeps, whether it answers or not (a cluster's processes get the primary's URL, same settings).
  const embedded = isEmbeddedMongo(config.MONGO_URL)
    ? { embedded: true, persistence: embeddedPersistence(config.EMBEDDED_MONGO_PATH, config.EMBEDDED_MONGO_PERSIST_MS) }
    : {}

  app.decorate('checkHealth', async (): Promise<HealthReport> => {
    const [postgres, redis, mongodb, rabbitmq] = await Promise.all([
      timed(async () => {
        // The relay runs in worker processes only; an api process reports the same lag from the cursor.
        const relay = app.eventRelay
        const lag = relay !== undefined ? await relay.health() : await relayLag(app.db)
        return {
          pool: app.db.poolStats(),
          relay_backlog: lag.backlog,
          relay_lag_seconds: lag.lagSeconds,
          ...(relay !== undefined ? { relay_active: relay.active } : {})
        }
      }),
      timed(async () => { await app.redis.ping() }),
      timed(async () => { await app.mongo.db!.command({ ping: 1 }) }).then((status) => ({ ...status, ...embedded })),
      timed(async () => {
        if (!app.broker.connected) throw new Error('not connected')
        const queues: Record<string, unknown> = {}
        for (const q of app.broker.topology.queues) queues[q.name] = await app.broker.queueStats(q.name)
        return { queues }
      })
    ])
    for (const [name, s] of Object.entries({ postgres, redis, mongodb, rabbitmq })) app.telemetry.dependencyUp.set({ dependency: name }, s.status === 'up' ? 1 : 0)
    const status = postgres.status === 'down' ? 'down' : [redis, mongodb, rabbitmq].some((s) => s.status === 'down') ? 'degraded' : 'ok'
    return { status, postgres, redis, mongodb, rabbitmq }
  })
  void config
}, { name: 'health', dependencies: ['config', 'postgres', 'redis', 'mongodb', 'rabbitmq'] })
