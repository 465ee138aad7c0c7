import type { Db } from 'mongodb'
import type { Broker, Handler, Probes } from './broker.js'
import type { Queryable } from './db.js'
import { ArchiveWriter } from './archive.js'
import { withTimeout } from './failures.js'
import { processWebhookItem, type ProcessDeps } from './webhooks/process.js'

const PROBE_TIMEOUT_MS = 2000

export interface Consumer { handler: Handler, probes: Probes }
export type ConsumerName = 'webhooks' | 'archive'

export interface ConsumerDeps extends Omit<ProcessDeps, 'db'> {
  db: Queryable
  mongo: Db
  /** Runs after a webhook item's effect committed (the relay publishes its events sooner). */
  afterWebhook?: () => void
}

/**
 * The handlers of the work queues (DESIGN §7) and, per cause of a transient failure, the probe that tells when their
 * store answers again: while PostgreSQL (webhooks) or MongoDB (archive) is unreachable, the queue pauses in this process.
 * Whatever else fails is classified by failures.ts: transient failures retry without limit, the rest dead-letter.
 */
export function createConsumers (deps: ConsumerDeps): Record<ConsumerName, Consumer> {
  const { db, mongo, afterWebhook, ...processDeps } = deps
  const webhooks: Handler = async ({ routingKey, content }) => {
    await processWebhookItem({ ...processDeps, db }, routingKey, content)
    afterWebhook?.()
  }
  const writer = new ArchiveWriter(mongo)
  const archive: Handler = async ({ routingKey, messageId, content, headers }) => {
    await writer.write({ routingKey, messageId, content, headers })
  }
  const postgresProbe = (): Promise<unknown> => withTimeout(db.query('SELECT 1'), PROBE_TIMEOUT_MS, 'PostgreSQL probe')
  const mongoProbe = (): Promise<unknown> => withTimeout(mongo.command({ ping: 1 }), PROBE_TIMEOUT_MS, 'MongoDB probe')
  return {
    webhooks: { handler: webhooks, probes: { postgres: postgresProbe } },
    // A hung MongoDB shows as write timeouts: the archive waits on a ping too.
    archive: { handler: archive, probes: { mongodb: mongoProbe, timeout: mongoProbe } }
  }
}

/** Subscribes every queue of the broker's topology that names its consumer; returns their names (to cancel them). */
export async function startConsumers (broker: Broker, consumers: Record<ConsumerName, Consumer>, wrap: (queue: string, handler: Handler) => Handler = (_q, h) => h): Promise<string[]> {
  const started: string[] = []
  for (const { name, consumer } of broker.topology.queues) {
    if (consumer === undefined) continue
    const { handler, probes } = consumers[consumer]
    await broker.consume(name, wrap(name, handler), { probes })
    started.push(name)
  }
  return started
}
