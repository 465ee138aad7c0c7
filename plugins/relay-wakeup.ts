import fp from 'fastify-plugin'
import { mayHaveWritten, RELAY_COALESCE_MS } from '../src/event-relay.js'

/** Redis channel on which API processes wake the event relay of the worker processes (DESIGN §7 roles). */
export const RELAY_WAKE_CHANNEL = 'jit:relay:wake'
/**
 * With split roles the relay runs in another process than the writes it publishes: an `api` process tells the
 * `worker` processes through Redis after a write it answered, and a `worker` kicks its relay on each message. In
 * ROLE=all the workers plugin kicks the relay in-process. A lost wake-up (Redis down) delays events until the relay's
 * own poll (RELAY_POLL_MS); it never loses one: the relay reads the committed rows, not the messages.
 */
export default fp(async (app) => {
  const { config } = app
  if (config.ROLE === 'api') {
    // The first write after a quiet spell wakes the relay at once; later ones within the relay's coalescing window
    // (it waits that long for more kicks anyway) share one trailing wake-up at the window's end.
    let pending: NodeJS.Timeout | undefined
    let more = false
    const wakeThenHold = (): void => {
      // The sender's pid: says nothing secret, and shows which process woke the relay.
      app.redis.publish(RELAY_WAKE_CHANNEL, String(process.pid)).catch(() => {})
      pending = setTimeout(windowEnd, RELAY_COALESCE_MS)
      pending.unref()
    }
    const windowEnd = (): void => {
      pending = undefined
      if (!more) return
      more = false
      wakeThenHold()
    }
    app.addHook('onResponse', async (request) => {
      if (!mayHaveWritten(request.method)) return
      if (pending !== undefined) more = true
      else wakeThenHold()
    })
    app.addHook('onClose', async () => { clearTimeout(pending) })
    return
  }
  const relay = app.eventRelay
  if (config.ROLE !== 'worker' || relay === undefined) return
  const subscriber = app.redisSubscriber
  subscriber.on('message', (channel: string) => { if (channel === RELAY_WAKE_CHANNEL) relay.kick() })
  // ioredis subscribes again by itself after a reconnect.
  subscriber.subscribe(RELAY_WAKE_CHANNEL).catch((err: Error) => app.log.warn({ err: err.message }, 'relay: cannot subscribe to wake-ups yet; polling meanwhile'))
}, { name: 'relay-wakeup', dependencies: ['config', 'redis', 'workers'] })
