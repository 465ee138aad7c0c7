import t from 'tap'
import amqp, { type ChannelModel } from 'amqplib'
import { coalesceFrameWrites } from '../../src/amqp-frame-writes.js'

const RABBITMQ_URL = process.env.RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672'
const COUNT = 200

/** Counts the write calls that reach the connection's socket (one call = one syscall for an uncorked socket). */
function countSocketWrites (model: ChannelModel): () => number {
  const socket = (model as unknown as { connection: { stream: { _write: (...a: unknown[]) => void, _writev?: (...a: unknown[]) => void } } }).connection.stream
  let calls = 0
  const write = socket._write.bind(socket)
  socket._write = (...a: unknown[]) => { calls++; write(...a) }
  const writev = socket._writev?.bind(socket)
  if (writev !== undefined) socket._writev = (...a: unknown[]) => { calls++; writev(...a) }
  return () => calls
}

/** Publishes COUNT messages in one go to a queue of its own, waits for their confirms and reads them all back. */
async function publishAll (coalesce: boolean): Promise<{ writes: number, received: string[], coalesced: boolean }> {
  const model = await amqp.connect(RABBITMQ_URL)
  try {
    const coalesced = coalesce && coalesceFrameWrites(model)
    const writes = countSocketWrites(model)
    const channel = await model.createConfirmChannel()
    const { queue } = await channel.assertQueue('', { exclusive: true })
    const before = writes()
    for (let i = 0; i < COUNT; i++) channel.sendToQueue(queue, Buffer.from(`m${i}`), { messageId: `m${i}` })
    await channel.waitForConfirms()
    const published = writes() - before
    const received: string[] = []
    await new Promise<void>((resolve) => {
      void channel.consume(queue, (msg) => {
        if (msg === null) return
        received.push(msg.content.toString())
        channel.ack(msg)
        if (received.length === COUNT) resolve()
      })
    })
    return { writes: published, received, coalesced }
  } finally {
    await model.close()
  }
}

t.test('a burst of publishes leaves in a few socket writes, every message intact and in order', async (t) => {
  const plain = await publishAll(false)
  const coalesced = await publishAll(true)
  t.ok(coalesced.coalesced, 'amqplib exposes the multiplexer this relies on')
  t.same(coalesced.received, Array.from({ length: COUNT }, (_, i) => `m${i}`))
  t.same(plain.received, coalesced.received)
  t.ok(plain.writes >= COUNT, `uncoalesced: ${plain.writes} socket writes for ${COUNT} publishes`)
  t.ok(coalesced.writes <= COUNT / 10, `coalesced: ${coalesced.writes} socket writes for ${COUNT} publishes`)
})
