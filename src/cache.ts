import { LRUCache } from 'lru-cache'

/** The part of ioredis the cache uses, so tests can hand in a client pointed anywhere. */
export interface RedisLike {
  mget: (...keys: string[]) => Promise<Array<string | null>>
  set: (key: string, value: string, mode: 'EX', seconds: number) => Promise<unknown>
  del: (...keys: string[]) => Promise<number>
  publish: (channel: string, message: string) => Promise<number>
}

export interface CacheEvents {
  hit?: (level: 'local' | 'redis') => void
  miss?: (level: 'local' | 'redis') => void
  redisError?: (err: Error) => void
  redisLookup?: (ms: number) => void
}

export interface CacheOptions {
  redis: RedisLike
  localTtlMs: number
  localMaxEntries: number
  negativeTtlS: number
  prefix?: string
  now?: () => number
  events?: CacheEvents
}

interface LocalEntry { value: unknown, expiresAt: number }

/** A key this lookup fills (the others wait on it through `inflight`). */
interface Fill {
  index: number
  key: string
  ttlS: number
  /** The key's invalidation count when the lookup started: a fill older than an invalidation is not kept locally. */
  generation: number
  settle: { resolve: (value: unknown) => void, reject: (err: unknown) => void }
  value?: unknown
}

export const INVALIDATION_CHANNEL = 'jitctx:invalidate'

/**
 * Two cache levels in front of a loader (DESIGN §8): a bounded in-process LRU with a short TTL, then Redis, then the
 * loader (PostgreSQL). One load per key for a burst of misses; `null` (unknown) cached for negativeTtlS only.
 * Redis failing is never an error for the caller: it counts, and the loader answers.
 */
export class TwoLevelCache {
  private readonly local: LRUCache<string, LocalEntry>
  private readonly inflight = new Map<string, Promise<unknown>>()
  /** Bumped by every invalidation, so a load that started before it does not repopulate the local level. */
  private readonly generations = new Map<string, number>()
  private readonly now: () => number
  private readonly prefix: string

  constructor (private readonly opts: CacheOptions) {
    this.local = new LRUCache({ max: opts.localMaxEntries })
    this.now = opts.now ?? Date.now
    this.prefix = opts.prefix ?? 'jitctx:'
  }

  async get<T> (key: string, ttlS: number, load: () => Promise<T | null>): Promise<T | null> {
    const [value] = await this.getMany([{ key, ttlS }], async () => new Map([[key, await load()]]))
    return value as T | null
  }

  /**
   * Several keys in one go: the local level, then ONE Redis MGET for the keys it lacks, then ONE call of `load` for
   * the keys Redis lacks (it returns their values by key; a key it leaves out is unknown, `null`). Keys another
   * lookup is already filling wait for that lookup (single flight per key). Values come back in `entries`' order.
   */
  async getMany (entries: Array<{ key: string, ttlS: number }>, load: (keys: string[]) => Promise<Map<string, unknown>>): Promise<unknown[]> {
    const results: unknown[] = new Array(entries.length)
    const waits: Array<Promise<void>> = []
    const mine: Fill[] = []
    const now = this.now()
    entries.forEach(({ key, ttlS }, index) => {
      const entry = this.local.get(key)
      if (entry !== undefined && entry.expiresAt > now) {
        this.opts.events?.hit?.('local')
        results[index] = entry.value
        return
      }
      this.opts.events?.miss?.('local')
      const pending = this.inflight.get(key)
      if (pending !== undefined) {
        waits.push(pending.then((value) => { results[index] = value }))
        return
      }
      let settle!: Fill['settle']
      const promise = new Promise<unknown>((resolve, reject) => { settle = { resolve, reject } })
      // A fill nobody else waits for must not turn its failure into an unhandled rejection.
      promise.catch(() => {})
      this.inflight.set(key, promise)
      mine.push({ index, key, ttlS, generation: this.generations.get(key) ?? 0, settle })
    })
    if (mine.length > 0) {
      try {
        await this.fill(mine, load)
        for (const f of mine) {
          results[f.index] = f.value
          f.settle.resolve(f.value)
        }
      } catch (err) {
        for (const f of mine) f.settle.reject(err)
        throw err
      } finally {
        for (const f of mine) this.inflight.delete(f.key)
      }
    }
    await Promise.all(waits)
    return results
  }

  private async fill (fills: Fill[], load: (keys: string[]) => Promise<Map<string, unknown>>): Promise<void> {
    const fromRedis = await this.redisGet(fills.map((f) => f.key))
    const missing: Fill[] = []
    fills.forEach((f, i) => {
      const raw = fromRedis?.[i]
      if (raw !== undefined && raw !== null) {
        this.opts.events?.hit?.('redis')
        f.value = JSON.parse(raw)
      } else {
        this.opts.events?.miss?.('redis')
        missing.push(f)
      }
    })
    if (missing.length > 0) {
      const loaded = await load(missing.map((f) => f.key))
      for (const f of missing) {
        f.value = loaded.get(f.key) ?? null
        const seconds = f.value === null ? Math.min(f.ttlS, this.opts.negativeTtlS) : f.ttlS
        this.opts.redis.set(this.prefix + f.key, JSON.stringify(f.value), 'EX', seconds).catch((err: Error) => this.opts.events?.redisError?.(err))
      }
    }
    for (const f of fills) {
      if ((this.generations.get(f.key) ?? 0) !== f.generation) continue
      const localTtl = f.value === null ? Math.min(this.opts.localTtlMs, this.opts.negativeTtlS * 1000) : this.opts.localTtlMs
      this.local.set(f.key, { value: f.value, expiresAt: this.now() + localTtl })
    }
  }

  /** One MGET; undefined when Redis fails (counted), so that the loader answers. */
  private async redisGet (keys: string[]): Promise<Array<string | null> | undefined> {
    const started = performance.now()
    try {
      const values = await this.opts.redis.mget(...keys.map((k) => this.prefix + k))
      this.opts.events?.redisLookup?.(performance.now() - started)
      return values
    } catch (err) {
      this.opts.events?.redisError?.(err as Error)
      return undefined
    }
  }

  /** Drops the keys here, in Redis, and (through pub/sub) in every other instance's local level. */
  async invalidate (keys: string[]): Promise<void> {
    if (keys.length === 0) return
    this.forgetLocally(keys)
    try {
      await this.opts.redis.del(...keys.map((k) => this.prefix + k))
      await this.opts.redis.publish(INVALIDATION_CHANNEL, JSON.stringify(keys))
    } catch (err) {
      // Redis down: other instances' local entries expire within localTtlMs, and PostgreSQL re-checks states.
      this.opts.events?.redisError?.(err as Error)
    }
  }

  /** Applies an invalidation message from another instance (or this one). */
  forgetLocally (keys: string[]): void {
    for (const key of keys) {
      this.local.delete(key)
      this.generations.set(key, (this.generations.get(key) ?? 0) + 1)
    }
  }
}
