import t from 'tap'
import { Redis } from 'ioredis'
import { build, eventually, jitHeaders, tcpProxy } from '../helper.js'
import { RELAY_WAKE_CHANNEL } from '../../plugins/relay-wakeup.js'

// Split roles (DESIGN §7): the relay runs in a worker process, the writes happen in api processes.

t.test('an api process wakes the workers through Redis after a write it answered', async (t) => {
  const api = await build(t, { ROLE: 'api' })
  const listener = api.redis.duplicate({ enableOfflineQueue: true })
  t.teardown(() => listener.disconnect())
  const mine: string[] = []
  listener.on('message', (channel: string, message: string) => { if (channel === RELAY_WAKE_CHANNEL && message === String(process.pid)) mine.push(message) })
  await listener.subscribe(RELAY_WAKE_CHANNEL)
  t.equal((await api.inject({ method: 'GET', url: '/health' })).statusCode, 200)
  const res = await api.inject({ method: 'POST', url: '/marqeta/jit', headers: jitHeaders, payload: {} })
  t.equal(res.statusCode, 400, 'any answered write counts, a refused one too')
  await eventually(async () => mine.length > 0, 5000)
  t.ok(mine.length >= 1, 'this process sent a wake-up')
})

t.test('a worker kicks its relay on a wake-up, without waiting for its poll', async (t) => {
  const worker = await build(t, { ROLE: 'worker', RELAY_POLL_MS: '600000' })
  const relay = worker.eventRelay
  if (relay === undefined) throw new Error('no relay in a ROLE=worker app')
  let kicks = 0
  const kick = relay.kick.bind(relay)
  relay.kick = () => { kicks++; kick() }
  // The subscription may still be on its way: send until one arrives.
  await eventually(async () => {
    await worker.redis.publish(RELAY_WAKE_CHANNEL, 'test')
    return kicks > 0
  }, 5000, 100)
  t.ok(kicks >= 1, `kicked ${kicks} time(s)`)
})

t.test('a worker that booted while Redis was down subscribes once it is back', async (t) => {
  const proxy = await tcpProxy(t, 6379)
  proxy.reset()
  const worker = await build(t, { ROLE: 'worker', RELAY_POLL_MS: '600000', REDIS_URL: `redis://127.0.0.1:${proxy.port}` })
  const relay = worker.eventRelay
  if (relay === undefined) throw new Error('no relay in a ROLE=worker app')
  // Past a failed reconnect: the point where a queued SUBSCRIBE used to be dropped.
  await eventually(async () => proxy.resetAttempts() >= 3, 10_000)
  let kicks = 0
  const kick = relay.kick.bind(relay)
  relay.kick = () => { kicks++; kick() }
  await proxy.restore()
  const publisher = new Redis('redis://127.0.0.1:6379')
  t.teardown(() => publisher.disconnect())
  await eventually(async () => {
    await publisher.publish(RELAY_WAKE_CHANNEL, 'test')
    return kicks > 0
  }, 15_000, 200)
  t.ok(kicks >= 1, 'woken through the subscription made after Redis came back')
})
