import fp from 'fastify-plugin'
import fastifyRedis from '@fastify/redis'
import { Redis } from 'ioredis'

/**
 * Redis is optional: the client is built here (not by @fastify/redis) so that an outage at boot does not stop the
 * service. No offline queue and no per-request retries, so that every command fails fast while Redis is down and
 * callers fall back to PostgreSQL; the client keeps reconnecting in the background.
 * @see https://github.com/fastify/fastify-redis
 */
export default fp(async (app) => {
  const { config } = app
  const options = {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeout: 1000,
    commandTimeout: config.REDIS_COMMAND_TIMEOUT_MS,
    lazyConnect: true,
    retryStrategy: (times: number) => Math.min(2000, 50 * times)
  }
  const client = new Redis(config.REDIS_URL, options)
  client.on('error', (err: Error) => app.log.debug({ err: err.message }, 'redis error'))
  try {
    await client.connect()
  } catch (err) {
    app.log.warn({ err: (err as Error).message }, 'Redis unreachable at boot; starting degraded and reconnecting')
  }
  // `subscriber` is a second connection because a subscribed ioredis connection cannot run other commands.
  // It queues its SUBSCRIBE until connected (ioredis re-subscribes after reconnects by itself).
  const subscriber = client.duplicate({ enableOfflineQueue: true, lazyConnect: true })
  subscriber.on('error', () => {})
  await subscriber.connect().catch(() => {})
  await app.register(fastifyRedis, { client, closeClient: true })
  await app.register(fastifyRedis, { client: subscriber, namespace: 'subscriber', closeClient: true })
}, { name: 'redis', dependencies: ['config'] })
