import t from 'tap'
import amqp, { type ConfirmChannel, type ConsumeMessage } from 'amqplib'
import { build, eventually, uniq, type Teardown } from '../helper.js'
import { buildConnected } from '../src/webhooks-helpers.js'
import { Broker, MAX_RETRIES, RetryLaterError, type Delivery, type Probes, type Settlement } from '../../src/broker.js'

const RABBITMQ_URL = process.env.RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672'

/** Deletes a test work queue and its retry and dead-letter queues (they are durable). */
async function deleteWorkQueue (name: string): Promise<void> {
  const connection = await amqp.connect(RABBITMQ_URL)
  try {
    const channel = await connection.createChannel()
    for (const q of [name, `${name}.retry`, `${name}.dlq`]) await channel.deleteQueue(q)
  } finally {
    await connection.close()
  }
}

/**
 * An app on a work queue of its own (with retry and dead-letter queues, deleted at teardown): `handle` consumes the
 * queue, `dead` collects what reaches the dead-letter queue.
 */
async function workQueue (t: Teardown, retryDelayMs: number, handle: (delivery: Delivery, prefix: string) => Promise<void>, probes: Probes = {}) {
  const app = await buildConnected(t, { ROLE: 'api', RABBITMQ_RETRY_DELAY_MS: String(retryDelayMs) })
  const { broker } = app
  const name = uniq('test.rmq')
  const prefix = `test.rmq.${name}`
  await broker.addWorkQueue({ name, bindings: [`${prefix}.#`] })
  t.teardown(() => deleteWorkQueue(name))
  await broker.consume(name, (delivery) => handle(delivery, prefix), { probes })
  const settled: Settlement[] = []
  broker.on('settled', (s: Settlement) => { if (s.queue === name) settled.push(s) })
  const dead: Delivery[] = []
  await broker.consume(`${name}.dlq`, async (delivery) => { dead.push(delivery) })
  const cancel = async (): Promise<void> => {
    await broker.cancel(name)
    await broker.cancel(`${name}.dlq`)
  }
  const acked = (messageId: string): boolean => settled.some((s) => s.messageId === messageId && s.outcome === 'acked')
  return { broker, name, prefix, dead, settled, acked, cancel }
}

t.test('a confirmed publish is consumed once, and a handler that keeps failing lands in the DLQ after 3 retries', async (t) => {
  const received: Delivery[] = []
  const { broker, prefix, dead, cancel } = await workQueue(t, 20, async (delivery, prefix) => {
    received.push(delivery)
    if (delivery.routingKey === `${prefix}.poison`) throw new Error('cannot handle this one')
  })

  await broker.publish(`${prefix}.ok`, { hello: 'world' }, { messageId: 'ok-1' })
  await eventually(async () => received.some((d) => d.messageId === 'ok-1'))
  const ok = received.filter((d) => d.messageId === 'ok-1')
  t.equal(ok.length, 1, 'delivered once')
  t.same(JSON.parse(ok[0].content.toString()), { hello: 'world' })
  t.equal(ok[0].routingKey, `${prefix}.ok`)

  await broker.publish(`${prefix}.poison`, { bad: true }, { messageId: 'poison-1' })
  await eventually(async () => dead.length > 0)
  const attempts = received.filter((d) => d.messageId === 'poison-1')
  t.equal(attempts.length, MAX_RETRIES + 1, 'the first delivery plus 3 retries')
  t.same(attempts.map((d) => d.retries), [0, 1, 2, 3])
  t.equal(dead.length, 1)
  t.equal(dead[0].messageId, 'poison-1')
  t.equal(dead[0].routingKey, `${prefix}.poison`, 'the original routing key survives the retries')
  t.equal(dead[0].headers['x-failure-reason'], 'cannot handle this one')
  t.equal(Number(dead[0].headers['x-retries']), MAX_RETRIES + 1)
  await cancel()
})

t.test('a handler whose dependency is down retries without using up its retries, and never dead-letters', async (t) => {
  const attempts: Delivery[] = []
  const { broker, prefix, dead, acked, settled, cancel } = await workQueue(t, 10, async (delivery) => {
    attempts.push(delivery)
    if (attempts.length <= MAX_RETRIES + 2) throw new RetryLaterError('store down')
  })
  await broker.publish(`${prefix}.x`, { n: 1 }, { messageId: 'later-1' })
  await eventually(async () => acked('later-1'))
  t.equal(attempts.length, MAX_RETRIES + 3, 'handled once it succeeded, after more failures than MAX_RETRIES')
  t.same(attempts.map((d) => d.retries), Array(MAX_RETRIES + 3).fill(0), 'no retry was counted')
  t.same(attempts.map((d) => Number(d.headers['x-transient-retries'] ?? 0)), [0, 1, 2, 3, 4, 5], 'each transient failure waits longer')
  t.equal(attempts.at(-1)?.headers['x-failure-reason'], 'store down')
  t.same(settled.map((s) => s.outcome), [...Array(MAX_RETRIES + 2).fill('retried'), 'acked'])
  t.equal(dead.length, 0, 'nothing dead-lettered')
  await cancel()
})

t.test('while a store is unreachable the queue pauses, probes at growing intervals, and resumes when it answers', async (t) => {
  let storeUp = false
  let probes = 0
  const attempts: string[] = []
  const { broker, name, prefix, dead, acked, cancel } = await workQueue(t, 20, async (delivery) => {
    attempts.push(delivery.messageId!)
    if (!storeUp) throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' })
  }, {
    postgres: async () => {
      probes++
      if (!storeUp) throw new Error('still down')
    }
  })
  await broker.publish(`${prefix}.a`, { n: 1 }, { messageId: 'paused-a' })
  await eventually(async () => broker.pausedQueues.includes(name))
  await broker.publish(`${prefix}.b`, { n: 2 }, { messageId: 'paused-b' })
  // Several probes have failed: the queue stayed paused all along, so the second message was never taken.
  await eventually(async () => probes >= 4)
  t.notOk(attempts.includes('paused-b'), 'no delivery while paused')
  t.ok(attempts.filter((id) => id === 'paused-a').length <= 2, 'the failing message is not spun on')
  storeUp = true
  await eventually(async () => acked('paused-a') && acked('paused-b'))
  t.notOk(broker.pausedQueues.includes(name), 'resumed')
  // Resumed on the same channel, its delivery tags go on from where they were: an ack naming a wrong one would close
  // the channel and deliver the message again.
  await broker.publish(`${prefix}.c`, { n: 3 }, { messageId: 'paused-c' })
  await eventually(async () => acked('paused-c'))
  t.equal(attempts.filter((id) => id === 'paused-b').length, 1, 'handled once')
  t.equal(attempts.filter((id) => id === 'paused-c').length, 1, 'handled once')
  t.equal(dead.length, 0, 'nothing dead-lettered')
  await cancel()
})

t.test('a settled listener that throws neither retries the message nor breaks the consumer', async (t) => {
  const received: string[] = []
  const { broker, prefix, acked, settled, cancel } = await workQueue(t, 20, async (delivery) => { received.push(delivery.messageId!) })
  const listener = (): void => { throw new Error('listener bug') }
  broker.on('settled', listener)
  t.teardown(() => broker.off('settled', listener))
  await broker.publish(`${prefix}.a`, { n: 1 }, { messageId: 'listener-a' })
  await eventually(async () => acked('listener-a'))
  // The consumer channel survived (a second ack of the first message would have closed it): the next one is consumed.
  await broker.publish(`${prefix}.b`, { n: 2 }, { messageId: 'listener-b' })
  await eventually(async () => acked('listener-b'))
  t.same(received, ['listener-a', 'listener-b'], 'each handled once')
  t.same(settled.map((s) => s.outcome), ['acked', 'acked'], 'nothing retried')
  await cancel()
})

t.test('a delivery that finishes after its queue was cancelled is acked before the broker closes, in the same turn', async (t) => {
  let release!: () => void
  const blocked = new Promise<void>((resolve) => { release = resolve })
  let started = false
  const { broker, name, prefix, cancel } = await workQueue(t, 20, async () => {
    started = true
    await blocked
  })
  await broker.publish(`${prefix}.a`, { n: 1 }, { messageId: 'late-a' })
  await eventually(async () => started)
  // As the workers plugin closes: the queue is cancelled first, the handler in flight finishes, then the broker closes.
  await cancel()
  const settled = new Promise((resolve) => broker.once('settled', resolve))
  release()
  await settled
  await broker.close()
  const connection = await amqp.connect(RABBITMQ_URL)
  t.teardown(() => connection.close())
  const channel = await connection.createChannel()
  t.equal((await channel.checkQueue(name)).messageCount, 0, 'the ack went out: nothing returned to the queue')
})

t.test('a consumer channel closed by the broker is subscribed again and the next message is consumed', async (t) => {
  const { broker, name, prefix, acked, cancel } = await workQueue(t, 20, async () => {})
  const subscriptions = (broker as unknown as { subscriptions: Map<string, { channel: ConfirmChannel }> }).subscriptions
  const first = subscriptions.get(name)!.channel
  const closed = new Promise((resolve) => first.once('close', resolve))
  // Acking a delivery tag the channel never had is a channel error: RabbitMQ closes the channel, not the connection.
  first.ack({ fields: { deliveryTag: 999_999 } } as ConsumeMessage)
  await closed
  await eventually(async () => subscriptions.get(name) !== undefined && subscriptions.get(name)!.channel !== first)
  t.ok(broker.connected, 'the connection stayed up')
  await broker.publish(`${prefix}.after`, { n: 1 }, { messageId: 'after-close' })
  await eventually(async () => acked('after-close'))
  t.pass('consumed on the new channel')
  await cancel()
})

t.test('a broker whose topology cannot be set up closes the connection it opened', async (t) => {
  const opened: amqp.ChannelModel[] = []
  const connect = amqp.connect
  amqp.connect = (async (...args: Parameters<typeof amqp.connect>) => {
    const connection = await connect(...args)
    opened.push(connection)
    return connection
  }) as typeof amqp.connect
  t.teardown(() => { amqp.connect = connect })
  // amq.* names are reserved: declaring one is refused by the server, so the first attempt fails after connecting.
  const broker = new Broker(RABBITMQ_URL, { log: { info: () => {}, warn: () => {}, error: () => {} }, topology: { exchange: 'amq.gateway-test', queues: [] } })
  t.teardown(() => broker.close())
  await broker.start()
  t.equal(broker.connected, false)
  t.equal(opened.length, 1, 'one connection was opened by the failed attempt')
  // The socket of the failed attempt is gone (a leaked one stays open until the broker is closed).
  const socket = (opened[0] as unknown as { connection: { stream: { destroyed: boolean } } }).connection.stream
  await eventually(async () => socket.destroyed, 5000)
  t.ok(socket.destroyed, 'and it was closed, not left open on the server')
})

t.test('publishing without a broker fails fast with a 503 error', async (t) => {
  const app = await build(t, { ROLE: 'api', RABBITMQ_URL: 'amqp://guest:guest@127.0.0.1:1' })
  t.equal(app.broker.connected, false)
  const started = performance.now()
  await t.rejects(app.broker.publish('test.nowhere', { a: 1 }), { statusCode: 503, message: 'message broker unavailable' })
  t.ok(performance.now() - started < 100, 'no waiting')
})

const percentile = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]
const summary = (samples: number[]): { p50: number, p99: number, max: number } => {
  const sorted = [...samples].sort((a, b) => a - b)
  const round = (ms: number): number => Math.round(ms * 100) / 100
  return { p50: round(percentile(sorted, 0.5)), p99: round(percentile(sorted, 0.99)), max: round(sorted[sorted.length - 1]) }
}

t.test('publish (until confirm) and consume (publish to handler) latencies', async (t) => {
  const app = await buildConnected(t, { ROLE: 'api' })
  const { broker } = app
  const name = uniq('test.latency')
  await broker.addWorkQueue({ name, bindings: [] })
  t.teardown(() => deleteWorkQueue(name))
  const sentAt = new Map<string, number>()
  const consumeMs: number[] = []
  let waiting: (() => void) | undefined
  await broker.consume(name, async (delivery) => {
    consumeMs.push(performance.now() - sentAt.get(delivery.messageId!)!)
    waiting?.()
  })

  const body = { jit_token: 'jit-0001', method: 'pgfs.authorization', request: { amount: 42.17 }, response: { jit_funding: { amount: 42.17 } } }
  // Straight to the queue through the default exchange: the shared archive queue, bound to everything on jit.events,
  // has no use for thousands of test messages. Same channel, same confirms.
  const publish = (id: string): Promise<void> => broker.publish(name, body, { messageId: id }, '')
  for (let i = 0; i < 50; i++) await publish(`w${i}`).then(() => sentAt.set(`w${i}`, 0))
  await eventually(async () => consumeMs.length >= 50)
  consumeMs.length = 0

  const publishMs: number[] = []
  for (let i = 0; i < 500; i++) {
    const id = `m${i}`
    const consumed = new Promise<void>((resolve) => { waiting = resolve })
    const started = performance.now()
    sentAt.set(id, started)
    await publish(id)
    publishMs.push(performance.now() - started)
    await consumed
  }
  const publishLatency = summary(publishMs)
  const consumeLatency = summary(consumeMs)

  const burstStarted = performance.now()
  await Promise.all(Array.from({ length: 2000 }, (_, i) => publish(`b${i}`).then(() => sentAt.set(`b${i}`, burstStarted))))
  const burstMs = performance.now() - burstStarted
  t.comment(`publish until confirm, one at a time (ms): ${JSON.stringify(publishLatency)}`)
  t.comment(`publish to handler start, one at a time (ms): ${JSON.stringify(consumeLatency)}`)
  t.comment(`2000 concurrent confirmed publishes: ${Math.round(burstMs)} ms (${Math.round(2000 / burstMs * 1000)}/s)`)
  // Generous bounds: test files run in parallel on 2 cores. The seed targets are publish < 10 ms, consume < 50 ms.
  t.ok(publishLatency.p50 < 10, `publish p50 ${publishLatency.p50} ms`)
  t.ok(consumeLatency.p50 < 50, `consume p50 ${consumeLatency.p50} ms`)
  await broker.cancel(name)
})
