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
  const redis = { mget: async (...keys: string[]) => keys.map(() => null), eval: async () => 0, publish: async () => 0 }
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

t.test('getMany: local hits, one MGET for the rest, one load for what Redis lacks, single flight across calls', async (t) => {
  const redis = redisClient()
  await redis.connect()
  t.teardown(() => redis.quit())
  const cache = new TwoLevelCache({ redis, localTtlMs: 60_000, localMaxEntries: 100, negativeTtlS: 5 })
  const [a, b, c, d] = ['a', 'b', 'c', 'd'].map((k) => uniq(k))
  t.equal(await cache.get(a, 60, async () => 'A'), 'A')
  await redis.set(`jitctx:${b}`, JSON.stringify('B'), 'EX', 60)
  const loads: string[][] = []
  const load = async (keys: string[]): Promise<Map<string, unknown>> => {
    loads.push(keys)
    await new Promise((resolve) => setTimeout(resolve, 20))
    return new Map(keys.filter((k) => k === c).map((k) => [k, 'C']))
  }
  const entries = [a, b, c, d].map((key) => ({ key, ttlS: 60 }))
  const [first, second] = await Promise.all([cache.getMany(entries, load), cache.getMany([...entries].reverse(), load)])
  t.same(first, ['A', 'B', 'C', null], 'in the order asked; a key the loader leaves out is unknown')
  t.same(second, [null, 'C', 'B', 'A'])
  t.same(loads, [[c, d]], 'one load, with exactly the keys neither level had, for both concurrent calls')
  t.equal(await redis.get(`jitctx:${c}`), '"C"', 'loaded values are written through')
  t.ok(Number(await redis.ttl(`jitctx:${d}`)) <= 5, 'the unknown one for the negative TTL only')
  t.same(await cache.getMany(entries, load), ['A', 'B', 'C', null])
  t.equal(loads.length, 1, 'then all four from the local level')

  // A failing load rejects every lookup waiting on it, and the next lookup tries again.
  const e = uniq('e')
  const failing = async (): Promise<Map<string, unknown>> => { await new Promise((resolve) => setTimeout(resolve, 10)); throw new Error('db down') }
  const both = await Promise.allSettled([cache.getMany([{ key: e, ttlS: 60 }], failing), cache.get(e, 60, async () => 'never')])
  t.same(both.map((r) => r.status), ['rejected', 'rejected'])
  t.equal(await cache.get(e, 60, async () => 'E'), 'E')
})

t.test('a fill that read PostgreSQL before an invalidation is not written to Redis after it, whichever instance did either', async (t) => {
  const redis = redisClient()
  await redis.connect()
  t.teardown(() => redis.quit())
  const a = new TwoLevelCache({ redis, localTtlMs: 60_000, localMaxEntries: 100, negativeTtlS: 5 })
  const b = new TwoLevelCache({ redis, localTtlMs: 60_000, localMaxEntries: 100, negativeTtlS: 5 })
  const key = uniq('race')
  let release!: () => void
  const loaded = new Promise<void>((resolve) => { release = resolve })
  let reading!: () => void
  const started = new Promise<void>((resolve) => { reading = resolve })
  // a reads the old value, then b's invalidation lands, then a's load returns.
  const filling = a.get(key, 60, async () => { reading(); await loaded; return 'OLD' })
  await started
  await b.invalidate([key])
  release()
  t.equal(await filling, 'OLD', 'the caller still gets what it loaded')
  // Same connection: commands run in order, so a's conditional write (if any) ran before this GET.
  t.equal(await redis.get(`jitctx:${key}`), null, 'the old value was not written back')
  t.equal(await b.get(key, 60, async () => 'NEW'), 'NEW', 'the next load is the new value')
  t.equal(await redis.get(`jitctx:${key}`), '"NEW"', 'and that one is written')
})

t.test('a fresh load replaces a stale value Redis kept because its invalidation failed', async (t) => {
  const redis = redisClient()
  await redis.connect()
  t.teardown(() => redis.quit())
  const cache = new TwoLevelCache({ redis, localTtlMs: 60_000, localMaxEntries: 100, negativeTtlS: 5 })
  const key = uniq('fresh')
  await redis.set(`jitctx:${key}`, '"STALE"', 'EX', 60)
  t.equal(await cache.get(key, 60, async () => 'CURRENT'), 'STALE', 'a normal lookup trusts Redis')
  const [value] = await cache.getMany([{ key, ttlS: 60 }], async (keys) => new Map(keys.map((k) => [k, 'CURRENT'])), { fresh: true })
  t.equal(value, 'CURRENT', 'a fresh lookup goes to the loader')
  t.equal(await redis.get(`jitctx:${key}`), '"CURRENT"', 'and refreshes Redis')
  t.equal(await cache.get(key, 60, async () => 'LOADED'), 'CURRENT', 'and the local level')
})

t.test('an invalidation that cannot reach Redis does not throw and is reported', async (t) => {
  const redis = redisClient('redis://127.0.0.1:1')
  t.teardown(() => redis.disconnect())
  let failed = 0
  const cache = new TwoLevelCache({ redis, localTtlMs: 60_000, localMaxEntries: 100, negativeTtlS: 5, events: { invalidationFailed: () => { failed++ } } })
  let loads = 0
  t.equal(await cache.get('k', 60, async () => ++loads), 1)
  await cache.invalidate(['k'])
  t.equal(failed, 1)
  t.equal(await cache.get('k', 60, async () => ++loads), 2, 'the local level forgot the key all the same')
})

t.test('a lookup whose own load fails while it also waits on another failing load leaves no unhandled rejection', async (t) => {
  const redis = redisClient()
  await redis.connect()
  t.teardown(() => redis.quit())
  const unhandled: unknown[] = []
  const onUnhandled = (reason: unknown): void => { unhandled.push(reason) }
  process.on('unhandledRejection', onUnhandled)
  t.teardown(() => { process.off('unhandledRejection', onUnhandled) })
  const cache = new TwoLevelCache({ redis, localTtlMs: 1000, localMaxEntries: 100, negativeTtlS: 5 })
  const [shared, own] = [uniq('shared'), uniq('own')]
  let releaseFirst!: () => void
  const firstLoading = new Promise<void>((resolve) => { releaseFirst = resolve })
  // The first lookup fills `shared` and fails only after the second one is waiting on it and has failed itself.
  const first = cache.getMany([{ key: shared, ttlS: 60 }], async () => { await firstLoading; throw new Error('database down (first)') })
  const second = cache.getMany([{ key: shared, ttlS: 60 }, { key: own, ttlS: 60 }], async () => { throw new Error('database down (second)') })
  await t.rejects(second, /second/, 'the second lookup fails with its own load')
  releaseFirst()
  await t.rejects(first, /first/)
  // Node reports an unhandled rejection once the microtask queue has drained: one turn of the event loop.
  await new Promise((resolve) => setImmediate(resolve))
  t.same(unhandled, [], 'no unhandled rejection (it ended the process while PostgreSQL was down)')
})
