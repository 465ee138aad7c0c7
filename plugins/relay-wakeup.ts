import fp from 'fastify-plugin'

/** Redis channel on which API processes wake the event relay of the worker processes (DESIGN §7 roles). */
export const RELAY_WAKE_CHANNEL = 'jit:relay:wake'
/**
 * An API process sends at most one wake-up per this many ms, whatever its rate of writes: the relay waits as long for
 * more kicks before its pass (EventRelay's coalesceMs), so more frequent wake-ups would only cost syscalls.
 */
export const RELAY_WAKE_COALESCE_MS = 100

/**
 * With split roles the relay runs in another process than the writes it publishes: an `api` process tells the
 * `worker` processes through Redis after a write it answered, and a `worker` kicks its relay on each message. In
 * ROLE=all the workers plugin kicks the relay in-process. A lost wake-up (Redis down) delays events until the relay's
 * own poll (RELAY_POLL_MS); it never loses one: the relay reads the committed rows, not the messages.
 */
export default fp(async (app) => {
  const { config } = app
  if (config.ROLE === 'api') {
    let pending: NodeJS.Timeout | undefined
    app.addHook('onResponse', async (request) => {
      if (request.method === 'GET' || request.method === 'HEAD' || pending !== undefined) return
      pending = setTimeout(() => {
        pending = undefined
        // The sender's pid: says nothing secret, and shows which process woke the relay.
        app.redis.publish(RELAY_WAKE_CHANNEL, String(process.pid)).catch(() => {})
      }, RELAY_WAKE_COALESCE_MS)
      pending.unref()
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
