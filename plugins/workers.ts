import fp from 'fastify-plugin'
import type { Delivery, Handler } from '../src/broker.js'
import { EventRelay, mayHaveWritten } from '../src/event-relay.js'
import { expireHolds } from '../src/hold-expiry.js'
import { Periodic } from '../src/periodic.js'
import { createConsumers, startConsumers } from '../src/consumers.js'

const QUEUE_SAMPLE_MS = 5000

declare module 'fastify' {
  interface FastifyInstance {
    /** This process's event relay (active or standing by); absent when ROLE=api. */
    eventRelay?: EventRelay
  }
}

/**
 * The background work of DESIGN §7 in ROLE=all and ROLE=worker: the event relay, the `webhooks.process` and
 * `transactions.archive` consumers, the hold-expiry timer, and the queue-depth gauges. Started once the app is ready;
 * stopped in onClose, which runs before the store plugins' own onClose (registered earlier, closed later).
 */
export default fp(async (app) => {
  const { config, broker, telemetry } = app
  if (config.ROLE === 'api') return

  const relay = new EventRelay({
    pool: app.db,
    databaseUrl: config.DATABASE_URL,
    broker,
    pollMs: config.RELAY_POLL_MS,
    log: app.log,
    metrics: telemetry
  })
  app.decorate('eventRelay', relay)
  const expiry = new Periodic('hold expiry', config.HOLD_EXPIRY_INTERVAL_MS, async () => {
    const pass = await expireHolds(app.db.pool)
    if (pass.expired > 0) app.log.info({ expired: pass.expired, released_minor: pass.releasedMinor.toString() }, 'holds expired')
  }, app.log)
  const inFlight = new Set<Promise<void>>()
  let sampler: NodeJS.Timeout | undefined

  const measured = (queue: string, handler: Handler): Handler => async (delivery: Delivery) => {
    const started = performance.now()
    const work = handler(delivery)
    const tracked = work.then(() => {}, () => {})
    inFlight.add(tracked)
    try {
      await work
    } finally {
      inFlight.delete(tracked)
      telemetry.consumeDuration.observe({ queue }, (performance.now() - started) / 1000)
    }
  }

  const consumers = createConsumers({
    db: app.db,
    mongo: app.mongo.db!,
    holdExpirationDays: config.HOLD_EXPIRATION_DAYS,
    invalidate: (what) => app.invalidateContext(what),
    onOverdrawn: () => telemetry.ledgerOverdrawn.inc(),
    log: app.log,
    afterWebhook: () => relay.kick()
  })
  let consumed: string[] = []

  const sampleQueues = async (): Promise<void> => {
    for (const { name } of broker.topology.queues) {
      const stats = await broker.queueStats(name).catch(() => undefined)
      if (stats === undefined) continue
      telemetry.queueDepth.set({ queue: name }, stats.messages)
      telemetry.queueDepth.set({ queue: `${name}.dlq` }, stats.dlq)
      telemetry.queueConsumers.set({ queue: name }, stats.consumers)
    }
  }

  // The relay polls for other instances' rows; this instance wakes it after any write it answered.
  app.addHook('onResponse', async (request) => {
    if (mayHaveWritten(request.method)) relay.kick()
  })

  app.addHook('onReady', async () => {
    consumed = await startConsumers(broker, consumers, measured)
    await relay.start()
    expiry.start()
    void sampleQueues()
    sampler = setInterval(() => { void sampleQueues() }, QUEUE_SAMPLE_MS)
    sampler.unref()
  })

  app.addHook('onClose', async () => {
    clearInterval(sampler)
    for (const name of consumed) await broker.cancel(name)
    // Handlers already running finish and ack on their channel before the broker and the stores close.
    await Promise.all([...inFlight])
    await relay.stop()
    await expiry.stop()
  })
}, { name: 'workers', dependencies: ['config', 'postgres', 'rabbitmq', 'mongodb', 'cache'] })
