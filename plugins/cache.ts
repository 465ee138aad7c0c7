import fp from 'fastify-plugin'
import client from 'prom-client'
import { TwoLevelCache, INVALIDATION_CHANNEL } from '../src/cache.js'
import { PgContextSource, type ContextSource } from '../src/jit/context.js'
import { CachedContextSource, contextKeys } from '../src/jit/cached-context.js'

/** What an admin write or a card/user transition changed. `controls` takes user tokens ('' = program-wide). */
export interface Invalidation { cards?: string[], users?: string[], controls?: string[] }

declare module 'fastify' {
  interface FastifyInstance {
    contextSource: ContextSource
    contextCache: TwoLevelCache
    invalidateContext: (what: Invalidation) => Promise<void>
  }
}

/** The authorization-context cache: in-process LRU, then Redis, then PostgreSQL; invalidated across instances. */
export default fp(async (app) => {
  const { config, telemetry } = app
  let hits = 0
  let lookups = 0
  const registers = [telemetry.registry]
  const invalidationFailures = new client.Counter({ name: 'cache_invalidation_failures_total', help: 'context invalidations that did not reach Redis (decisions stay right through the context versions)', registers })
  const staleContexts = new client.Counter({ name: 'jit_stale_context_total', help: 'JIT decisions the ledger refused for a stale context, then made again on one loaded from PostgreSQL', registers })
  const cache = new TwoLevelCache({
    redis: app.redis,
    localTtlMs: config.CACHE_LOCAL_TTL_MS,
    localMaxEntries: config.CACHE_LOCAL_MAX_ENTRIES,
    negativeTtlS: config.CACHE_NEGATIVE_TTL_S,
    // A context part is cached with its version: an unknown card or user is a part whose value is null.
    isNegative: (part) => (part as { value?: unknown } | null)?.value === null,
    events: {
      hit: (level) => {
        telemetry.cacheHits.inc({ level })
        hits++
        lookups += level === 'local' ? 1 : 0
        telemetry.cacheHitRate.set(hits / Math.max(1, lookups))
      },
      miss: (level) => {
        telemetry.cacheMisses.inc({ level })
        if (level === 'local') lookups++
      },
      redisError: (err) => {
        telemetry.cacheErrors.inc()
        app.log.debug({ err: err.message }, 'cache: Redis unavailable, using PostgreSQL')
      },
      redisLookup: (ms) => telemetry.redisLookupDuration.observe(ms / 1000),
      invalidationFailed: (err) => {
        invalidationFailures.inc()
        app.log.warn({ err: err.message }, 'cache: invalidation did not reach Redis; context versions keep decisions right')
      }
    }
  })
  const subscriber = app.redisSubscriber
  subscriber.on('message', (channel: string, message: string) => {
    if (channel !== INVALIDATION_CHANNEL) return
    try {
      cache.forgetLocally(JSON.parse(message) as string[])
    } catch {
      app.log.warn('cache: malformed invalidation message')
    }
  })
  // ioredis re-subscribes by itself after a reconnect.
  subscriber.subscribe(INVALIDATION_CHANNEL).catch((err: Error) => app.log.warn({ err: err.message }, 'cache: cannot subscribe to invalidations yet'))

  app.decorate('contextCache', cache)
  const fromPostgres = new PgContextSource(app.db, { queryTimeoutMs: config.JIT_DEADLINE_MS })
  // CACHE_ENABLED=false: every decision loads its context from PostgreSQL (the bench's without-cache row).
  const source: ContextSource = !config.CACHE_ENABLED ? fromPostgres : new CachedContextSource(cache, fromPostgres, {
    userS: config.CACHE_USER_TTL_S,
    cardS: config.CACHE_CARD_TTL_S,
    controlsS: config.CACHE_CONTROLS_TTL_S
  })
  app.decorate<ContextSource>('contextSource', {
    parts: async (cardToken, userToken, wanted, opts) => {
      // A fresh load is asked for only by a decision the ledger found stale.
      if (opts?.fresh === true) staleContexts.inc()
      return await source.parts(cardToken, userToken, wanted, opts)
    }
  })
  app.decorate('invalidateContext', async (what: Invalidation) => {
    await cache.invalidate([
      ...(what.cards ?? []).map(contextKeys.card),
      ...(what.users ?? []).map(contextKeys.user),
      ...(what.controls ?? []).map(contextKeys.controls)
    ])
  })
}, { name: 'cache', dependencies: ['config', 'postgres', 'redis'] })
