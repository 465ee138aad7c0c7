import t from 'tap'
import amqp, { type Channel, type ConsumeMessage } from 'amqplib'
import { ChannelAcks } from '../../src/channel-acks.js'
import type { Teardown } from '../helper.js'

const RABBITMQ_URL = process.env.RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672'
const COUNT = 20

interface Run {
  acks: ChannelAcks
  messages: ConsumeMessage[]
  /** The channel.ack calls made so far: [delivery tag, multiple]. */
  ackCalls: Array<[number, boolean]>
  /** Waits for the pending acks to go out, closes the consuming channel and counts what the queue holds again. */
  closeAndCount: () => Promise<number>
  /** Whether the consuming channel is still open (the broker closes it on an ack of a tag it does not hold). */
  open: () => Promise<boolean>
}

/** COUNT messages delivered on a channel of their own, registered with a ChannelAcks in delivery order. */
async function deliverAll (t: Teardown): Promise<Run> {
  const model = await amqp.connect(RABBITMQ_URL)
  t.teardown(() => model.close().catch(() => {}))
  const inspect = await model.createChannel()
  const { queue } = await inspect.assertQueue('', { exclusive: true })
  for (let i = 0; i < COUNT; i++) inspect.sendToQueue(queue, Buffer.from(`m${i}`))
  const channel: Channel = await model.createChannel()
  let closed = false
  channel.on('error', () => {})
  channel.on('close', () => { closed = true })
  const ackCalls: Array<[number, boolean]> = []
  const ack = channel.ack.bind(channel)
  channel.ack = (msg, allUpTo) => { ackCalls.push([msg.fields.deliveryTag, allUpTo === true]); ack(msg, allUpTo) }
  const acks = new ChannelAcks(channel)
  const messages: ConsumeMessage[] = []
  await new Promise<void>((resolve) => {
    void channel.consume(queue, (msg) => {
      if (msg === null) return
      acks.delivered(msg)
      messages.push(msg)
      if (messages.length === COUNT) resolve()
    })
  })
  const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))
  return {
    acks,
    messages,
    ackCalls,
    open: async () => {
      await turn()
      // A round trip on the channel: a refused ack closes it before the answer comes back.
      await channel.checkQueue(queue).catch(() => {})
      return !closed
    },
    closeAndCount: async () => {
      await turn()
      if (!closed) await channel.close()
      return (await inspect.checkQueue(queue)).messageCount
    }
  }
}

t.test('deliveries settled in any order within a turn go out as one multiple ack of the last', async (t) => {
  const run = await deliverAll(t)
  for (const msg of [...run.messages].reverse()) run.acks.ack(msg)
  t.equal(await run.closeAndCount(), 0, 'every message was acked: none returned to the queue when the channel closed')
  t.same(run.ackCalls, [[run.messages[COUNT - 1].fields.deliveryTag, true]], 'one ack for all of them')
})

t.test('deliveries settled behind one still being handled are acked alone; the head waits for it', async (t) => {
  const run = await deliverAll(t)
  const slow = run.messages[4]
  for (const msg of run.messages) if (msg !== slow) run.acks.ack(msg)
  t.ok(await run.open())
  t.same(run.ackCalls, [
    [run.messages[3].fields.deliveryTag, true],
    ...run.messages.slice(5).map((m): [number, boolean] => [m.fields.deliveryTag, false])
  ], 'the four before it in one ack, each after it alone: none waits for the slow one')
  run.acks.ack(slow)
  t.equal(await run.closeAndCount(), 0)
  t.same(run.ackCalls.at(-1), [slow.fields.deliveryTag, true], 'the slow one is then the head')
})

t.test('an unsettled delivery returns to the queue when the channel goes, and only it', async (t) => {
  const run = await deliverAll(t)
  for (const msg of run.messages) if (msg !== run.messages[4]) run.acks.ack(msg)
  t.equal(await run.closeAndCount(), 1, 'delivered again (handlers are idempotent); the others stay acked')
})

t.test('a requeued delivery is never named by the ack, in the middle or last', async (t) => {
  const run = await deliverAll(t)
  run.acks.requeue(run.messages[2])
  run.acks.requeue(run.messages[COUNT - 1])
  for (const msg of run.messages.slice(0, COUNT - 1)) if (msg !== run.messages[2]) run.acks.ack(msg)
  t.ok(await run.open(), 'the broker took the ack (an ack of a tag it no longer holds would close the channel)')
  t.same(run.ackCalls, [[run.messages[COUNT - 2].fields.deliveryTag, true]])
  t.equal(await run.closeAndCount(), 2, 'the two requeued messages are back in the queue, nothing else')
})

t.test('flush() sends the settled head at once', async (t) => {
  const run = await deliverAll(t)
  for (const msg of run.messages.slice(0, 5)) run.acks.ack(msg)
  run.acks.flush()
  t.same(run.ackCalls, [[run.messages[4].fields.deliveryTag, true]], 'sent before the turn ends')
})
