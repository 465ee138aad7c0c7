import t from 'tap'
import amqp from 'amqplib'
import { build, eventually, uniq } from '../helper.js'
import { MAX_RETRIES, type Delivery } from '../../src/broker.js'

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

t.test('a confirmed publish is consumed once, and a handler that keeps failing lands in the DLQ after 3 retries', async (t) => {
  const app = await build(t, { RUN_WORKERS: 'false', RABBITMQ_RETRY_DELAY_MS: '20' })
  const { broker } = app
  const name = uniq('test.rmq')
  const prefix = `test.rmq.${name}`
  await broker.addWorkQueue({ name, bindings: [`${prefix}.#`] })
  t.teardown(() => deleteWorkQueue(name))

  const received: Delivery[] = []
  await broker.consume(name, async (delivery) => {
    received.push(delivery)
    if (delivery.routingKey === `${prefix}.poison`) throw new Error('cannot handle this one')
  })
  const dead: Delivery[] = []
  await broker.consume(`${name}.dlq`, async (delivery) => { dead.push(delivery) })

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
  await broker.cancel(name)
  await broker.cancel(`${name}.dlq`)
})

t.test('publishing without a broker fails fast with a 503 error', async (t) => {
  const app = await build(t, { RUN_WORKERS: 'false', RABBITMQ_URL: 'amqp://guest:guest@127.0.0.1:1' })
  t.equal(app.broker.connected, false)
  const started = performance.now()
  await t.rejects(app.broker.publish('test.nowhere', { a: 1 }), { statusCode: 503, message: 'message broker unavailable' })
  t.ok(performance.now() - started < 100, 'no waiting')
})
