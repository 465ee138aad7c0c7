import t from 'tap'
import { Redis } from 'ioredis'
import { TwoLevelCache } from '../../src/cache.js'
import { uniq } from '../helper.js'

function redisClient (url = 'redis://127.0.0.1:6379'): Redis {
  const client = new Redis(url, { enableOfflineQueue: false, maxRetriesPerRequest: 0, commandTimeout: 200, lazyConnect: true, retryStrategy: () => null })
  client.on('error', () => {})
  return client
}

t.test('a burst of misses loads once, then both levels answer', async (t) => {
  const redis = redisClient()
  await redis.connect()
  t.teardown(() => redis.quit())
  let loads = 0
  const cache = new TwoLevelCache({ redis, localTtlMs: 1000, localMaxEntries: 100, negativeTtlS: 5 })
  const key = uniq('k')
  const load = async (): Promise<{ v: number }> => { loads++; await new Promise((resolve) => setTimeout(resolve, 20)); return { v: 1 } }
  const values = await Promise.all(Array.from({ length: 20 }, () => cache.get(key, 60, load)))
  t.equal(loads, 1, 'one database load for twenty concurrent misses')
  t.same(values[19], { v: 1 })
  t.equal(await redis.get(`jitctx:${key}`), '{"v":1}', 'written through to Redis')

  const other = new TwoLevelCache({ redis, localTtlMs: 1000, localMaxEntries: 100, negativeTtlS: 5 })
  t.same(await other.get(key, 60, load), { v: 1 })
  t.equal(loads, 1, 'a second instance is served by Redis')
})

t.test('the local level expires with its (settable) clock', async (t) => {
  let now = 1_000_000
  let loads = 0
  const redis = { get: async () => null, set: async () => 'OK', del: async () => 0, publish: async () => 0 }
  const cache = new TwoLevelCache({ redis, localTtlMs: 2000, localMaxEntries: 100, negativeTtlS: 5, now: () => now })
  const load = async (): Promise<number> => ++loads
  t.equal(await cache.get('k', 60, load), 1)
  now += 1999
  t.equal(await cache.get('k', 60, load), 1, 'still fresh just before the TTL')
  now += 2
  t.equal(await cache.get('k', 60, load), 2, 'reloaded after the TTL')
})

t.test('unknown values are cached for the negative TTL only', async (t) => {
  const redis = redisClient()
  await redis.connect()
  t.teardown(() => redis.quit())
  const cache = new TwoLevelCache({ redis, localTtlMs: 1000, localMaxEntries: 100, negativeTtlS: 7 })
  const key = uniq('missing')
  t.equal(await cache.get(key, 3600, async () => null), null)
  const ttl = await redis.ttl(`jitctx:${key}`)
  t.ok(ttl > 0 && ttl <= 7, `negative entry expires within 7 s (ttl ${ttl})`)
})

t.test('Redis on a closed port: every lookup still answers from the loader, errors are counted', async (t) => {
  const redis = redisClient('redis://127.0.0.1:1')
  t.teardown(() => redis.disconnect())
  let errors = 0
  let loads = 0
  const cache = new TwoLevelCache({ redis, localTtlMs: 0, localMaxEntries: 100, negativeTtlS: 5, events: { redisError: () => { errors++ } } })
  for (let i = 0; i < 5; i++) t.equal(await cache.get('k', 60, async () => ++loads), i + 1)
  t.ok(errors >= 5, `Redis errors counted (${errors})`)
  await cache.invalidate(['k'])
})

t.test('an invalidation drops the key in Redis and, through pub/sub, in another instance', async (t) => {
  const redis = redisClient()
  const sub = redisClient()
  await redis.connect()
  await sub.connect()
  t.teardown(() => { redis.disconnect(); sub.disconnect() })
  const a = new TwoLevelCache({ redis, localTtlMs: 60_000, localMaxEntries: 100, negativeTtlS: 5 })
  const b = new TwoLevelCache({ redis, localTtlMs: 60_000, localMaxEntries: 100, negativeTtlS: 5 })
  await sub.subscribe('jitctx:invalidate')
  const received = new Promise<void>((resolve) => sub.on('message', (_c: string, m: string) => { b.forgetLocally(JSON.parse(m)); resolve() }))
  const key = uniq('state')
  let state = 'ACTIVE'
  t.equal(await b.get(key, 60, async () => state), 'ACTIVE')
  state = 'SUSPENDED'
  t.equal(await b.get(key, 60, async () => state), 'ACTIVE', 'b serves its local copy')
  await a.invalidate([key])
  await received
  t.equal(await b.get(key, 60, async () => state), 'SUSPENDED', 'b reloads after the invalidation')
})
