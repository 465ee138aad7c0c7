import { LRUCache } from 'lru-cache'

/** The part of ioredis the cache uses, so tests can hand in a client pointed anywhere. */
export interface RedisLike {
  mget: (...keys: string[]) => Promise<Array<string | null>>
  publish: (channel: string, message: string) => Promise<number>
  eval: (script: string, numKeys: number, ...args: Array<string | number>) => Promise<unknown>
}

export interface CacheEvents {
  hit?: (level: 'local' | 'redis') => void
  miss?: (level: 'local' | 'redis') => void
  redisError?: (err: Error) => void
  redisLookup?: (ms: number) => void
  /** An invalidation did not reach Redis (the keys stay there until their TTL; context versions keep decisions right). */
  invalidationFailed?: (err: Error) => void
}

export interface CacheOptions {
  redis: RedisLike
  localTtlMs: number
  localMaxEntries: number
  negativeTtlS: number
  prefix?: string
  /** Which values stand for "unknown" and live for negativeTtlS only; by default `null`. */
  isNegative?: (value: unknown) => boolean
  /** How long a key's invalidation epoch lives in Redis: far longer than any load, so it never resets under one. */
  epochTtlS?: number
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
  /** The key's invalidation epoch in Redis, read with its value ('' when none); undefined when Redis did not answer. */
  epoch?: string
  value?: unknown
}

export const INVALIDATION_CHANNEL = 'jitctx:invalidate'

// KEYS: value and epoch key pairs; ARGV: per pair, the epoch read before the load, the value, its TTL. A value is
// written only if no invalidation (INCR of the epoch) happened since the read, so a load that read PostgreSQL before
// an invalidation never lands in Redis after it, whichever instance did either.
const FILL_SCRIPT = `for i = 1, #KEYS, 2 do
  local k = (i + 1) / 2
  if (redis.call('GET', KEYS[i + 1]) or '') == ARGV[3 * k - 2] then
    redis.call('SET', KEYS[i], ARGV[3 * k - 1], 'EX', ARGV[3 * k])
  end
end
return 0`

// KEYS: value and epoch key pairs; ARGV[1]: the epoch's TTL.
const INVALIDATE_SCRIPT = `for i = 1, #KEYS, 2 do
  redis.call('INCR', KEYS[i + 1])
  redis.call('EXPIRE', KEYS[i + 1], ARGV[1])
  redis.call('DEL', KEYS[i])
end
return 0`

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
  private readonly epochTtlS: number

  constructor (private readonly opts: CacheOptions) {
    this.local = new LRUCache({ max: opts.localMaxEntries })
    this.now = opts.now ?? Date.now
    this.prefix = opts.prefix ?? 'jitctx:'
    this.epochTtlS = opts.epochTtlS ?? 86_400
  }

  async get<T> (key: string, ttlS: number, load: () => Promise<T | null>): Promise<T | null> {
    const [value] = await this.getMany([{ key, ttlS }], async () => new Map([[key, await load()]]))
    return value as T | null
  }

  /**
   * Several keys in one go: the local level, then ONE Redis MGET for the keys it lacks, then ONE call of `load` for
   * the keys Redis lacks (it returns their values by key; a key it leaves out is unknown, `null`). Keys another
   * lookup is already filling wait for that lookup (single flight per key). Values come back in `entries`' order.
   * `fresh`: skip both levels and load every key, then store what was loaded (under the same epoch rule), for a caller
   * that knows its cached values are stale.
   */
  async getMany (entries: Array<{ key: string, ttlS: number }>, load: (keys: string[]) => Promise<Map<string, unknown>>, opts: { fresh?: boolean } = {}): Promise<unknown[]> {
    if (opts.fresh === true) {
      // Loads of these keys already under way here must not overwrite what this one stores locally.
      this.forgetLocally(entries.map((e) => e.key))
      const fills: Fill[] = entries.map(({ key, ttlS }, index) => ({ index, key, ttlS, generation: this.generations.get(key) ?? 0, settle: { resolve: () => {}, reject: () => {} } }))
      await this.fill(fills, load, true)
      return fills.map((f) => f.value)
    }
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
    // Awaited at the end; if this lookup's own fill throws first, the others' failures must not go unhandled (with
    // PostgreSQL down, that unhandled rejection ended the process).
    const waited = Promise.all(waits)
    waited.catch(() => {})
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
    await waited
    return results
  }

  private async fill (fills: Fill[], load: (keys: string[]) => Promise<Map<string, unknown>>, fresh = false): Promise<void> {
    const n = fills.length
    // Values and epochs in one MGET; a fresh fill reads the epochs only.
    const fromRedis = await this.redisGet([
      ...(fresh ? [] : fills.map((f) => this.prefix + f.key)),
      ...fills.map((f) => this.epochKey(f.key))])
    const missing: Fill[] = []
    fills.forEach((f, i) => {
      if (fromRedis !== undefined) f.epoch = fromRedis[(fresh ? 0 : n) + i] ?? ''
      const raw = fresh ? undefined : fromRedis?.[i]
      if (raw !== undefined && raw !== null) {
        this.opts.events?.hit?.('redis')
        f.value = JSON.parse(raw)
      } else {
        if (!fresh) this.opts.events?.miss?.('redis')
        missing.push(f)
      }
    })
    if (missing.length > 0) {
      const loaded = await load(missing.map((f) => f.key))
      for (const f of missing) f.value = loaded.get(f.key) ?? null
      this.writeBack(missing)
    }
    for (const f of fills) {
      if ((this.generations.get(f.key) ?? 0) !== f.generation) continue
      const localTtl = this.negative(f.value) ? Math.min(this.opts.localTtlMs, this.opts.negativeTtlS * 1000) : this.opts.localTtlMs
      this.local.set(f.key, { value: f.value, expiresAt: this.now() + localTtl })
    }
  }

  private negative (value: unknown): boolean {
    return value === null || this.opts.isNegative?.(value) === true
  }

  private epochKey (key: string): string {
    return `${this.prefix}epoch:${key}`
  }

  /** Stores loaded values in Redis unless invalidated since their epoch was read (off the caller's path). */
  private writeBack (fills: Fill[]): void {
    // Without the epoch (Redis did not answer the read) a value could be older than an invalidation: not written.
    const known = fills.filter((f) => f.epoch !== undefined)
    if (known.length === 0) return
    const keys = known.flatMap((f) => [this.prefix + f.key, this.epochKey(f.key)])
    const args = known.flatMap((f) => [f.epoch!, JSON.stringify(f.value), this.negative(f.value) ? Math.min(f.ttlS, this.opts.negativeTtlS) : f.ttlS])
    this.opts.redis.eval(FILL_SCRIPT, keys.length, ...keys, ...args).catch((err: Error) => this.opts.events?.redisError?.(err))
  }

  /** One MGET of full keys; undefined when Redis fails (counted), so that the loader answers. */
  private async redisGet (keys: string[]): Promise<Array<string | null> | undefined> {
    const started = performance.now()
    try {
      const values = await this.opts.redis.mget(...keys)
      this.opts.events?.redisLookup?.(performance.now() - started)
      return values
    } catch (err) {
      this.opts.events?.redisError?.(err as Error)
      return undefined
    }
  }

  /**
   * Drops the keys here, in Redis (bumping their epochs, so that loads already under way are not written back), and
   * through pub/sub in every other instance's local level. Never throws: with Redis unreachable the old values stay
   * until their TTL, and the context versions checked by the ledger make decisions reload them (DESIGN §8).
   */
  async invalidate (keys: string[]): Promise<void> {
    if (keys.length === 0) return
    this.forgetLocally(keys)
    try {
      await this.opts.redis.eval(INVALIDATE_SCRIPT, keys.length * 2, ...keys.flatMap((k) => [this.prefix + k, this.epochKey(k)]), this.epochTtlS)
      await this.opts.redis.publish(INVALIDATION_CHANNEL, JSON.stringify(keys))
    } catch (err) {
      this.opts.events?.redisError?.(err as Error)
      this.opts.events?.invalidationFailed?.(err as Error)
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
