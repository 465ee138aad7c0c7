import { LRUCache } from 'lru-cache'

/** The part of ioredis the cache uses, so tests can hand in a client pointed anywhere. */
export interface RedisLike {
  get: (key: string) => Promise<string | null>
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
    const entry = this.local.get(key)
    if (entry !== undefined && entry.expiresAt > this.now()) {
      this.opts.events?.hit?.('local')
      return entry.value as T | null
    }
    this.opts.events?.miss?.('local')
    const pending = this.inflight.get(key)
    if (pending !== undefined) return await (pending as Promise<T | null>)
    const promise = this.fill(key, ttlS, load).finally(() => this.inflight.delete(key))
    this.inflight.set(key, promise)
    return await promise
  }

  private async fill<T> (key: string, ttlS: number, load: () => Promise<T | null>): Promise<T | null> {
    const generation = this.generations.get(key) ?? 0
    const fromRedis = await this.redisGet(key)
    let value: T | null
    if (fromRedis !== undefined) {
      this.opts.events?.hit?.('redis')
      value = JSON.parse(fromRedis) as T | null
    } else {
      this.opts.events?.miss?.('redis')
      value = await load()
      const seconds = value === null ? Math.min(ttlS, this.opts.negativeTtlS) : ttlS
      this.opts.redis.set(this.prefix + key, JSON.stringify(value), 'EX', seconds).catch((err: Error) => this.opts.events?.redisError?.(err))
    }
    if ((this.generations.get(key) ?? 0) === generation) {
      const localTtl = value === null ? Math.min(this.opts.localTtlMs, this.opts.negativeTtlS * 1000) : this.opts.localTtlMs
      this.local.set(key, { value, expiresAt: this.now() + localTtl })
    }
    return value
  }

  private async redisGet (key: string): Promise<string | undefined> {
    const started = performance.now()
    try {
      const value = await this.opts.redis.get(this.prefix + key)
      this.opts.events?.redisLookup?.(performance.now() - started)
      return value ?? undefined
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
