import fp from 'fastify-plugin'
import fastifyRedis from '@fastify/redis'
import { Redis } from 'ioredis'

declare module 'fastify' {
  interface FastifyInstance {
    /** A second connection for pub/sub: a subscribed ioredis connection cannot run other commands. */
    redisSubscriber: Redis
  }
}

/**
 * Redis is optional: an outage at boot does not stop the service. No offline queue and no per-request retries, so
 * every command fails fast while Redis is down and callers fall back to PostgreSQL; the client keeps reconnecting.
 * @see https://github.com/fastify/fastify-redis
 */
export default fp(async (app) => {
  const { config } = app
  const client = new Redis(config.REDIS_URL, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeout: 1000,
    commandTimeout: config.REDIS_COMMAND_TIMEOUT_MS,
    lazyConnect: true,
    // A context miss asks for card, user and both control scopes at once: one write instead of four.
    enableAutoPipelining: true,
    retryStrategy: (times: number) => Math.min(2000, 50 * times)
  })
  client.on('error', (err: Error) => app.log.debug({ err: err.message }, 'redis error'))
  let connected = true
  try {
    await client.connect()
  } catch (err) {
    connected = false
    app.log.warn({ err: (err as Error).message }, 'Redis unreachable at boot; starting degraded and reconnecting')
  }
  if (connected) {
    await app.register(fastifyRedis, { client, closeClient: true })
  } else {
    // @fastify/redis waits for 'ready' on a client that is not connected, which would block the boot.
    app.decorate('redis', client as any)
    app.addHook('onClose', async () => { client.disconnect() })
  }

  // It queues its SUBSCRIBE until connected (ioredis re-subscribes after reconnects by itself).
  // maxRetriesPerRequest null: the main client's 0 would drop the queued SUBSCRIBE at the first failed reconnect, and
  // ioredis re-subscribes only to channels the server confirmed.
  const subscriber = client.duplicate({ enableOfflineQueue: true, lazyConnect: true, commandTimeout: undefined, maxRetriesPerRequest: null })
  subscriber.on('error', () => {})
  await subscriber.connect().catch(() => {})
  app.decorate('redisSubscriber', subscriber)
  app.addHook('onClose', async () => { subscriber.disconnect() })
}, { name: 'redis', dependencies: ['config'] })
