import amqp from 'amqplib'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../../src/app.js'
import type { Handler, Settlement, Topology } from '../../src/broker.js'
import { createConsumers, startConsumers } from '../../src/consumers.js'
import { eventually, testConfig, uniq, type Teardown } from '../helper.js'
import { RABBITMQ_URL } from './webhooks-helpers.js'

export interface Isolated {
  app: FastifyInstance
  topology: Topology
  queues: { webhooks: string, archive: string }
  /** Every delivery this app's consumers finished with, in order. */
  settled: Settlement[]
  /** Resolves once `count` deliveries of `messageId` on `queue` ended with `outcome` (default: acked). */
  waitSettled: (queue: string, messageId: string, count?: number, outcome?: Settlement['outcome'], timeoutMs?: number) => Promise<void>
}

/**
 * An app on an exchange and work queues of its own (deleted at teardown), consumed only by this app's consumers (the
 * same handlers and probes as plugins/workers.ts): what the test posts is processed here and nowhere else, so it can
 * wait for "processed" instead of sleeping. ROLE=api: no relay of this app takes the shared events.
 */
export async function buildIsolated (t: Teardown, overrides: Record<string, string> = {}, options: { consume?: boolean } = {}): Promise<Isolated> {
  const id = uniq('t').replace(/-/g, '.')
  const queues = { webhooks: `test.${id}.webhooks`, archive: `test.${id}.archive` }
  const topology: Topology = {
    exchange: `test.${id}`,
    queues: [
      { name: queues.webhooks, bindings: ['webhook.#'], consumer: 'webhooks' },
      { name: queues.archive, bindings: ['#'], consumer: 'archive' }
    ]
  }
  const app = await buildApp(testConfig({ ROLE: 'api', ...overrides }), { logger: false, topology })
  t.teardown(async () => {
    await app.close()
    await deleteTopology(topology)
  })
  await app.ready()
  await eventually(async () => app.broker.connected, 20_000)
  const settled: Settlement[] = []
  app.broker.on('settled', (s: Settlement) => settled.push(s))
  if (options.consume !== false) {
    const consumers = createConsumers({
      db: app.db,
      mongo: app.mongo.db!,
      holdExpirationDays: app.config.HOLD_EXPIRATION_DAYS,
      invalidate: (what) => app.invalidateContext(what),
      onOverdrawn: () => app.telemetry.ledgerOverdrawn.inc(),
      log: app.log
    })
    const measured = (queue: string, handler: Handler): Handler => async (delivery) => {
      const started = performance.now()
      try {
        await handler(delivery)
      } finally {
        app.telemetry.consumeDuration.observe({ queue }, (performance.now() - started) / 1000)
      }
    }
    await startConsumers(app.broker, consumers, measured)
  }
  const waitSettled = async (queue: string, messageId: string, count = 1, outcome: Settlement['outcome'] = 'acked', timeoutMs = 20_000): Promise<void> => {
    await eventually(async () => settled.filter((s) => s.queue === queue && s.messageId === messageId && s.outcome === outcome).length >= count, timeoutMs, 20)
  }
  return { app, topology, queues, settled, waitSettled }
}

/** Deletes a topology's work, retry and dead-letter queues and its exchange (they are durable). */
export async function deleteTopology (topology: Topology): Promise<void> {
  const connection = await amqp.connect(RABBITMQ_URL)
  try {
    const channel = await connection.createChannel()
    for (const { name } of topology.queues) for (const q of [name, `${name}.retry`, `${name}.dlq`]) await channel.deleteQueue(q)
    if (topology.exchange !== 'jit.events') await channel.deleteExchange(topology.exchange)
  } finally {
    await connection.close()
  }
}

/** Messages waiting in a queue (a passive check). */
export async function queueDepth (queue: string): Promise<number> {
  const connection = await amqp.connect(RABBITMQ_URL)
  try {
    const channel = await connection.createChannel()
    return (await channel.checkQueue(queue)).messageCount
  } finally {
    await connection.close()
  }
}

/** The value of a counter for the given labels (0 when it was never incremented). */
export async function counterValue (metric: { get: () => Promise<{ values: Array<{ labels: Record<string, unknown>, value: number }> }> }, labels: Record<string, string>): Promise<number> {
  const { values } = await metric.get()
  return values.filter((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l)).reduce((sum, v) => sum + v.value, 0)
}
