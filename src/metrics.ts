import client from 'prom-client'
import { declineReasons, knownMethods } from './marqeta.js'
import { BACKLOG_COUNT_LIMIT } from './event-relay.js'

/** Histogram buckets in seconds; the first is sub-millisecond because a decision's own work is. */
export const latencyBuckets = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]

export const jitStages = ['parse', 'auth', 'context', 'rules', 'ledger', 'respond'] as const
export type JitStage = typeof jitStages[number]

// Label values come from request bodies: each one is a time series, so only known values pass, anything else is `other`.
const reasonLabels: ReadonlySet<string> = new Set<string>([...declineReasons, 'DEADLINE', 'STALE_CONTEXT', ''])

/** The `method` label: a method of Marqeta's table (src/marqeta.ts), else `other`. */
export function methodLabel (method: string): string {
  return knownMethods.has(method) ? method : 'other'
}

/** The `reason` label: a Marqeta decline reason or one of ours (DEADLINE, STALE_CONTEXT), `''` for none, else `other`. */
export function reasonLabel (reason: string | undefined): string {
  const value = reason ?? ''
  return reasonLabels.has(value) ? value : 'other'
}

/**
 * Every metric of the product, in one registry per app instance (tests run several instances in one process,
 * and prom-client's global registry would make their names collide).
 */
export function createMetrics () {
  const registry = new client.Registry()
  const registers = [registry]
  const metrics = {
    registry,
    pgQueryDuration: new client.Histogram({ name: 'pg_query_duration_seconds', help: 'PostgreSQL query duration', buckets: latencyBuckets, registers }),
    pgSlowQueries: new client.Counter({ name: 'pg_slow_queries_total', help: 'PostgreSQL queries slower than PG_SLOW_QUERY_MS', registers }),
    pgPoolTotal: new client.Gauge({ name: 'pg_pool_total', help: 'PostgreSQL clients open', registers }),
    pgPoolIdle: new client.Gauge({ name: 'pg_pool_idle', help: 'PostgreSQL clients idle', registers }),
    pgPoolWaiting: new client.Gauge({ name: 'pg_pool_waiting', help: 'requests waiting for a PostgreSQL client', registers }),
    pgPoolUtilisation: new client.Gauge({ name: 'pg_pool_utilisation', help: 'busy clients / pool max', registers }),
    dependencyUp: new client.Gauge({ name: 'dependency_up', help: '1 when the dependency answers', labelNames: ['dependency'], registers }),
    jitStageDuration: new client.Histogram({ name: 'jit_stage_duration_seconds', help: 'JIT decision time per stage', labelNames: ['stage'], buckets: latencyBuckets, registers }),
    jitDecisions: new client.Counter({ name: 'jit_decisions_total', help: 'JIT decisions', labelNames: ['method', 'result', 'reason'], registers }),
    jitApprovalRate: new client.Gauge({ name: 'jit_approval_rate', help: 'approved / (approved + declined) since start', registers }),
    jitBatchSize: new client.Histogram({ name: 'jit_batch_size', help: 'JIT decisions per ledger call (group commit)', buckets: [1, 2, 3, 5, 8, 13, 21, 34], registers }),
    jitBatchFallbacks: new client.Counter({ name: 'jit_batch_fallbacks_total', help: 'batches that failed and whose decisions ran one by one', labelNames: ['cause'], registers }),
    jitSlowRequests: new client.Counter({ name: 'jit_slow_requests_total', help: 'JIT requests over the slow thresholds', labelNames: ['threshold'], registers }),
    jitUnknownMethods: new client.Counter({ name: 'jit_unknown_methods_total', help: 'JIT requests with a method we do not know', labelNames: ['method'], registers }),
    ledgerOverdrawn: new client.Counter({ name: 'ledger_overdrawn_total', help: 'network-forced postings that drove an account negative', registers }),
    cacheHits: new client.Counter({ name: 'cache_hits_total', help: 'authorization-context cache hits', labelNames: ['level'], registers }),
    cacheMisses: new client.Counter({ name: 'cache_misses_total', help: 'authorization-context cache misses', labelNames: ['level'], registers }),
    cacheErrors: new client.Counter({ name: 'cache_errors_total', help: 'Redis errors on the cache path (fell back to PostgreSQL)', registers }),
    cacheHitRate: new client.Gauge({ name: 'cache_hit_rate', help: 'hits / lookups since start, any level', registers }),
    redisLookupDuration: new client.Histogram({ name: 'redis_lookup_duration_seconds', help: 'Redis lookup latency', buckets: latencyBuckets, registers }),
    // Relay lag (DESIGN §9): committed ledger rows whose events are not yet confirmed by RabbitMQ.
    relayBacklog: new client.Gauge({ name: 'relay_backlog', help: `committed decisions and transfers whose events are not yet published (counted up to ${BACKLOG_COUNT_LIMIT})`, registers }),
    relayLag: new client.Gauge({ name: 'relay_lag_seconds', help: 'age of the older of the next committed decision and the next committed transfer whose events are not yet published', registers }),
    publishDuration: new client.Histogram({ name: 'rabbitmq_publish_duration_seconds', help: 'publish until broker confirm', buckets: latencyBuckets, registers }),
    consumeDuration: new client.Histogram({ name: 'rabbitmq_consume_duration_seconds', help: 'handler time per consumed message', labelNames: ['queue'], buckets: latencyBuckets, registers }),
    queueDepth: new client.Gauge({ name: 'rabbitmq_queue_depth', help: 'messages ready in a queue', labelNames: ['queue'], registers }),
    queueConsumers: new client.Gauge({ name: 'rabbitmq_queue_consumers', help: 'consumers subscribed to a queue, all instances', labelNames: ['queue'], registers }),
    consumerRetries: new client.Counter({ name: 'consumer_retries_total', help: 'failed deliveries sent back for another try, by cause (postgres, mongodb, lock, timeout: can pass; permanent: counts against the tries)', labelNames: ['queue', 'cause'], registers }),
    consumerDeadLetters: new client.Counter({ name: 'consumer_dead_letters_total', help: 'messages dead-lettered after their last try', labelNames: ['queue'], registers }),
    consumerPaused: new client.Gauge({ name: 'consumer_paused', help: '1 while this process has paused a queue because a store it needs is unreachable', labelNames: ['queue'], registers })
  }
  client.collectDefaultMetrics({ register: registry })
  return metrics
}

export type Metrics = ReturnType<typeof createMetrics>
