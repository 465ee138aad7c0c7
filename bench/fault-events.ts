import amqp, { type Channel } from 'amqplib'
import { defaultTopology } from '../src/broker.js'
import { sleep, type AnsweredJit, type CheckResult } from './fault-traffic.js'

/** The fault run's own durable copy of every event: what the relay published survives a broker restart until read. */
export const EVENT_LOG_QUEUE = 'faults.events'

/** Runs `work` on a channel of a connection of its own, closed after it. */
async function withChannel<T> (url: string, work: (channel: Channel) => Promise<T>): Promise<T> {
  const connection = await amqp.connect(url)
  try {
    return await work(await connection.createChannel())
  } finally {
    await connection.close()
  }
}

/** Deletes the copy: on a shared vhost it would otherwise collect every event from then on. */
export async function removeEventLog (url: string): Promise<void> {
  await withChannel(url, async (channel) => { await channel.deleteQueue(EVENT_LOG_QUEUE) })
}

/** Declares the copy (in the run's own vhost) before the service starts publishing. */
export async function prepareEventLog (url: string): Promise<void> {
  await withChannel(url, async (channel) => {
    await channel.assertExchange(defaultTopology.exchange, 'topic', { durable: true })
    await channel.assertQueue(EVENT_LOG_QUEUE, { durable: true })
    await channel.bindQueue(EVENT_LOG_QUEUE, defaultTopology.exchange, '#')
  })
}

/** Every event message id delivered to the copy so far, with how many times (a consumer dedupes by that id). */
export class EventLog {
  readonly deliveries = new Map<string, number>()

  /** Reads everything the copy holds now; each message is acked once recorded (a dropped read leaves it queued). */
  async drain (url: string): Promise<void> {
    await withChannel(url, async (channel) => {
      for (;;) {
        const message = await channel.get(EVENT_LOG_QUEUE)
        if (message === false) break
        const id = String(message.properties.messageId ?? '')
        this.deliveries.set(id, (this.deliveries.get(id) ?? 0) + 1)
        channel.ack(message)
      }
    })
  }

  get redelivered (): number {
    let extra = 0
    for (const n of this.deliveries.values()) extra += n - 1
    return extra
  }
}

/**
 * Every JIT answer given (200 or 402) has its decision event, `jit.approved.<method>` or `jit.declined.<method>`
 * under the message id `decision:<token>:<routing key>` (src/events.ts), and never the other outcome's: after
 * deduplication by message id, each decision is published exactly once, whatever the broker or the service went
 * through. Waits for the relay to catch up until `deadline`.
 */
export async function checkEvents (log: EventLog, url: string, answers: AnsweredJit[], deadline: number): Promise<CheckResult> {
  const expected = answers.filter((a) => a.status === 200 || a.status === 402).map((a) => {
    let method = '?'
    try { method = JSON.parse(a.text).jit_funding.method } catch {}
    const outcome = (status: number): string => `decision:${a.token}:jit.${status === 200 ? 'approved' : 'declined'}.${method}`
    return { answer: a, id: outcome(a.status), other: outcome(a.status === 200 ? 402 : 200) }
  })
  let missing = expected
  const failures: string[] = []
  for (;;) {
    try {
      await log.drain(url)
    } catch (err) {
      if (Date.now() > deadline) { failures.push(`cannot read ${EVENT_LOG_QUEUE}: ${(err as Error).message}`); break }
    }
    missing = missing.filter((e) => !log.deliveries.has(e.id))
    if (missing.length === 0 || Date.now() > deadline) break
    await sleep(1000)
  }
  for (const e of missing) failures.push(`no event ${e.id} for the answer ${e.answer.status} at +${e.answer.at.toFixed(1)} s`)
  for (const e of expected) if (log.deliveries.has(e.other)) failures.push(`decision ${e.answer.token}, answered ${e.answer.status}, was published as ${e.other}`)
  return { checked: expected.length, failures, notes: [] }
}
