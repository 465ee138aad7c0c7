import { EventEmitter } from 'node:events'
import amqp, { type ChannelModel, type ConfirmChannel, type ConsumeMessage, type Options } from 'amqplib'
import { classifyFailure, type Failure, type FailureCause } from './failures.js'
import { coalesceFrameWrites } from './amqp-frame-writes.js'
import { ChannelAcks } from './channel-acks.js'

export { RetryLaterError } from './failures.js'

export interface WorkQueue {
  name: string
  /** Routing-key patterns bound on the topic exchange. */
  bindings: string[]
  /** Which of the workers (plugins/workers.ts) consumes it; a queue without one is consumed by whoever asks. */
  consumer?: 'webhooks' | 'archive'
}

export interface Topology {
  exchange: string
  queues: WorkQueue[]
}

/** DESIGN §7: one topic exchange, two work queues, each with a delayed retry queue and a dead-letter queue. */
export const defaultTopology: Topology = {
  exchange: 'jit.events',
  queues: [
    { name: 'webhooks.process', bindings: ['webhook.#'], consumer: 'webhooks' },
    { name: 'transactions.archive', bindings: ['#'], consumer: 'archive' }
  ]
}

/** Tries of a message that can never succeed before it is dead-lettered; a transient failure never counts. */
export const MAX_RETRIES = 3

export interface Logger {
  info: (obj: object | string, msg?: string) => void
  warn: (obj: object | string, msg?: string) => void
  error: (obj: object | string, msg?: string) => void
}

export interface BrokerOptions {
  topology?: Topology
  prefetch?: number
  /** First retry delay; it doubles with each try (MAX_RETRIES tries), or with each transient failure up to the cap. */
  retryDelayMs?: number
  /** Cap of the delay between two tries of a message whose failure can pass. */
  maxRetryDelayMs?: number
  /** Cap of the interval between two probes of a store that a paused queue waits for. */
  maxProbeIntervalMs?: number
  classify?: (err: unknown) => Failure
  /** Upper bound of the reconnect backoff. */
  maxBackoffMs?: number
  publishTimeoutMs?: number
  log: Logger
}

export interface Delivery {
  content: Buffer
  routingKey: string
  messageId?: string
  headers: Record<string, unknown>
  retries: number
}

export type Handler = (delivery: Delivery) => Promise<void>

/** Per cause of a transient failure, how to tell that the store is back (e.g. `SELECT 1`). */
export type Probes = Partial<Record<FailureCause, () => Promise<unknown>>>

export interface ConsumeOptions {
  /** A transient failure whose cause has a probe pauses the queue in this process until the probe succeeds. */
  probes?: Probes
}

/**
 * What became of one delivery: emitted as 'settled' once its outcome is decided. An ack goes out with the channel's
 * next bulk ack, in the same turn of the event loop (src/channel-acks.ts).
 */
export interface Settlement {
  queue: string
  messageId?: string
  routingKey: string
  outcome: 'acked' | 'retried' | 'dead-lettered'
  failure?: Failure
}

export class BrokerUnavailableError extends Error {
  statusCode = 503
  constructor (message = 'message broker unavailable') { super(message) }
}

/**
 * A RabbitMQ connection that reconnects with backoff, re-asserts the topology and re-subscribes consumers after
 * every reconnect, and a consumer whose channel alone was closed (e.g. by a channel error) on the same connection.
 * Publishing fails fast while disconnected, so callers can answer 503, and the event relay leaves its cursor where it is.
 * Emits 'settled' (a Settlement) for every delivery a consumer finished with, 'paused' and 'resumed' per queue; a
 * listener that throws is logged and never affects an ack, a retry or the connection.
 */
export class Broker extends EventEmitter {
  private connection?: ChannelModel
  private channel?: ConfirmChannel
  private readonly consumers = new Map<string, { handler: Handler, probes: Probes }>()
  private readonly subscriptions = new Map<string, { channel: ConfirmChannel, consumerTag?: string }>()
  /** Every open consumer channel, also after its queue was cancelled: deliveries handed out on it still settle there. */
  private readonly consumerChannels = new Map<ConfirmChannel, ChannelAcks>()
  private readonly paused = new Map<string, { timer?: NodeJS.Timeout }>()
  /**
   * Queues whose consumer channel was closed on a connection that stays up, to subscribe again; the backoff grows for
   * as long as the connection lives, so a channel the broker keeps closing is not reopened in a loop.
   */
  private readonly resubscribing = new Map<string, { timer?: NodeJS.Timeout, attempt: number }>()
  private closing = false
  private attempt = 0
  private timer?: NodeJS.Timeout
  private readonly opts: Required<Omit<BrokerOptions, 'log'>> & { log: Logger }
  private firstAttempt?: Promise<void>

  constructor (private readonly url: string, options: BrokerOptions) {
    super()
    this.opts = {
      topology: defaultTopology,
      prefetch: 32,
      retryDelayMs: 1000,
      maxRetryDelayMs: 30_000,
      maxProbeIntervalMs: 5000,
      maxBackoffMs: 10_000,
      publishTimeoutMs: 2000,
      classify: classifyFailure,
      // An option passed as undefined keeps its default.
      ...Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined)) as BrokerOptions
    }
  }

  get topology (): Topology { return this.opts.topology }
  get connected (): boolean { return this.channel !== undefined }
  /** Queues whose consumption this process has paused while a store is unreachable. */
  get pausedQueues (): string[] { return [...this.paused.keys()] }

  /** Starts connecting; resolves after the first attempt, connected or not (the loop goes on in the background). */
  start (): Promise<void> {
    this.firstAttempt ??= this.connect()
    return this.firstAttempt
  }

  private async connect (): Promise<void> {
    if (this.closing) return
    let connection: ChannelModel | undefined
    try {
      connection = await amqp.connect(this.url, { timeout: 2000, noDelay: true })
      connection.on('error', (err) => this.opts.log.warn({ err }, 'rabbitmq connection error'))
      if (!coalesceFrameWrites(connection)) this.opts.log.warn('amqplib internals changed: frames are written one syscall each')
      const channel = await connection.createConfirmChannel()
      channel.on('error', (err) => this.opts.log.warn({ err }, 'rabbitmq channel error'))
      await this.assertTopology(channel)
      if (this.closing) {
        await connection.close().catch(() => {})
        return
      }
      connection.on('close', () => this.onDisconnect())
      this.connection = connection
      this.channel = channel
      this.attempt = 0
      for (const queue of this.consumers.keys()) await this.subscribe(queue)
      this.opts.log.info('rabbitmq connected')
      this.notify('connected')
    } catch (err) {
      this.opts.log.warn({ err: (err as Error).message }, 'rabbitmq unreachable; retrying in the background')
      // A connection opened before the failure (channel or topology refused) is closed, not left open on the server;
      // an adopted one reconnects through its own close handler.
      await connection?.close().catch(() => {})
      this.scheduleReconnect()
    }
  }

  private onDisconnect (): void {
    const wasConnected = this.channel !== undefined
    this.channel = undefined
    this.connection = undefined
    this.subscriptions.clear()
    this.clearResubscribing()
    if (this.closing) return
    if (wasConnected) {
      this.opts.log.warn('rabbitmq connection lost; reconnecting')
      this.notify('disconnected')
    }
    this.scheduleReconnect()
  }

  private scheduleReconnect (): void {
    if (this.closing || this.timer !== undefined) return
    const delay = Math.min(this.opts.maxBackoffMs, 100 * 2 ** this.attempt++)
    this.timer = setTimeout(() => {
      this.timer = undefined
      void this.connect()
    }, delay)
    this.timer.unref()
  }

  private async assertTopology (channel: ConfirmChannel): Promise<void> {
    await channel.assertExchange(this.opts.topology.exchange, 'topic', { durable: true })
    for (const queue of this.opts.topology.queues) await this.declareWorkQueue(channel, queue)
  }

  /** A durable queue, its retry queue (messages wait there, then dead-letter back) and its dead-letter queue. */
  private async declareWorkQueue (channel: ConfirmChannel, queue: WorkQueue): Promise<void> {
    await channel.assertQueue(`${queue.name}.dlq`, { durable: true })
    await channel.assertQueue(`${queue.name}.retry`, {
      durable: true,
      arguments: { 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': queue.name }
    })
    await channel.assertQueue(queue.name, {
      durable: true,
      arguments: { 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': `${queue.name}.dlq` }
    })
    for (const pattern of queue.bindings) await channel.bindQueue(queue.name, this.opts.topology.exchange, pattern)
  }

  /** Declares another work queue on the exchange (used by tests and tools); kept across reconnects. */
  async addWorkQueue (queue: WorkQueue): Promise<void> {
    this.opts.topology = { ...this.opts.topology, queues: [...this.opts.topology.queues, queue] }
    if (this.channel !== undefined) await this.declareWorkQueue(this.channel, queue)
  }

  /** Publishes a persistent message and resolves once the broker confirms it. */
  async publish (routingKey: string, body: unknown, options: Options.Publish = {}, exchange = this.opts.topology.exchange): Promise<void> {
    const channel = this.channel
    if (channel === undefined) throw new BrokerUnavailableError()
    const content = Buffer.isBuffer(body) ? body : Buffer.from(JSON.stringify(body))
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new BrokerUnavailableError('publish confirm timed out')), this.opts.publishTimeoutMs)
      channel.publish(exchange, routingKey, content, { persistent: true, contentType: 'application/json', timestamp: Math.floor(Date.now() / 1000), ...options }, (err) => {
        clearTimeout(timer)
        if (err != null) reject(new BrokerUnavailableError(`publish not confirmed: ${String(err)}`))
        else resolve()
      })
    })
  }

  /**
   * Consumes `queue` with a prefetch; acks after the handler resolves. A failure that can pass (classify) goes through
   * the retry queue with a delay doubling up to maxRetryDelayMs, for as long as it lasts, without using up a try; and
   * when its cause has a probe, this process stops taking the queue's deliveries until the probe succeeds. A failure
   * that never passes is retried MAX_RETRIES times, then dead-lettered with its reason in `x-failure-reason`.
   */
  async consume (queue: string, handler: Handler, options: ConsumeOptions = {}): Promise<void> {
    this.consumers.set(queue, { handler, probes: options.probes ?? {} })
    if (this.channel !== undefined) await this.subscribe(queue)
  }

  private async subscribe (queue: string): Promise<void> {
    const connection = this.connection
    if (connection === undefined) return
    const channel = await connection.createConfirmChannel()
    channel.on('error', (err) => this.opts.log.warn({ err, queue }, 'rabbitmq consumer channel error'))
    // A connection closes its channels before it reports its own close: decide once that has run.
    channel.on('close', () => setImmediate(() => this.onConsumerChannelClose(queue, channel, connection)))
    await channel.prefetch(this.opts.prefetch)
    this.consumerChannels.set(channel, new ChannelAcks(channel))
    channel.on('close', () => this.consumerChannels.delete(channel))
    this.subscriptions.set(queue, { channel })
    if (!this.paused.has(queue)) await this.startConsuming(queue)
  }

  /**
   * A consumer channel closed while its connection stays up (the broker closes a channel on a channel error, such as
   * an unknown delivery tag): nothing else would consume the queue again, so it is subscribed again with backoff. A
   * channel closed with its connection is left to the reconnect, one closed by cancel() or close() to nobody.
   */
  private onConsumerChannelClose (queue: string, channel: ConfirmChannel, connection: ChannelModel): void {
    if (this.closing || this.connection !== connection || this.subscriptions.get(queue)?.channel !== channel) return
    this.subscriptions.delete(queue)
    this.opts.log.warn({ queue }, 'rabbitmq consumer channel closed; subscribing again')
    this.resubscribeLater(queue, connection)
  }

  private resubscribeLater (queue: string, connection: ChannelModel): void {
    const state = this.resubscribing.get(queue) ?? { attempt: 0 }
    this.resubscribing.set(queue, state)
    clearTimeout(state.timer)
    state.timer = setTimeout(() => {
      state.timer = undefined
      if (this.closing || this.connection !== connection || !this.consumers.has(queue) || this.subscriptions.has(queue)) return
      this.subscribe(queue).catch((err) => {
        this.opts.log.warn({ err: (err as Error).message, queue }, 'subscribing again failed; retrying')
        this.resubscribeLater(queue, connection)
      })
    }, Math.min(this.opts.maxBackoffMs, 100 * 2 ** state.attempt++))
    state.timer.unref()
  }

  private clearResubscribing (queue?: string): void {
    for (const [name, state] of this.resubscribing) {
      if (queue !== undefined && name !== queue) continue
      clearTimeout(state.timer)
      this.resubscribing.delete(name)
    }
  }

  private async startConsuming (queue: string): Promise<void> {
    const subscription = this.subscriptions.get(queue)
    if (subscription === undefined || subscription.consumerTag !== undefined) return
    const { channel } = subscription
    const acks = this.consumerChannels.get(channel)
    if (acks === undefined) return // closed meanwhile: the reconnect or resubscription consumes again
    const { consumerTag } = await channel.consume(queue, (msg) => {
      if (msg === null) return
      acks.delivered(msg)
      void this.handle(channel, acks, queue, msg)
    })
    subscription.consumerTag = consumerTag
  }

  private async stopConsuming (queue: string): Promise<void> {
    const subscription = this.subscriptions.get(queue)
    const consumerTag = subscription?.consumerTag
    if (subscription === undefined || consumerTag === undefined) return
    subscription.consumerTag = undefined
    await subscription.channel.cancel(consumerTag).catch(() => {})
  }

  /**
   * Stops delivering `queue` to this process (also after reconnects). Messages already handed to the handler keep their
   * channel, so they are still acked (or retried) when it finishes; close the broker after waiting for them.
   */
  async cancel (queue: string): Promise<void> {
    this.consumers.delete(queue)
    this.clearResubscribing(queue)
    clearTimeout(this.paused.get(queue)?.timer)
    this.paused.delete(queue)
    await this.stopConsuming(queue)
    this.subscriptions.delete(queue)
  }

  /** Stops taking deliveries of `queue` until `probe` succeeds, probing at growing intervals (no spinning, one log line). */
  private pause (queue: string, failure: Failure, probe: () => Promise<unknown>): void {
    if (this.paused.has(queue) || !this.consumers.has(queue)) return
    const state: { timer?: NodeJS.Timeout } = {}
    this.paused.set(queue, state)
    this.opts.log.warn({ queue, cause: failure.cause, reason: failure.reason }, 'store unavailable: consumption paused until it answers')
    this.notify('paused', { queue, cause: failure.cause })
    void this.stopConsuming(queue)
    let attempt = 0
    const schedule = (): void => {
      const delay = Math.min(this.opts.maxProbeIntervalMs, this.opts.retryDelayMs * 2 ** attempt++)
      state.timer = setTimeout(() => {
        probe().then(() => this.resume(queue, state), () => { if (this.paused.get(queue) === state && !this.closing) schedule() })
      }, delay)
      state.timer.unref()
    }
    schedule()
  }

  private resume (queue: string, state: { timer?: NodeJS.Timeout }): void {
    if (this.paused.get(queue) !== state || this.closing) return
    this.paused.delete(queue)
    this.opts.log.info({ queue }, 'store answers again: consumption resumed')
    this.notify('resumed', { queue })
    void this.startConsuming(queue).catch((err) => this.opts.log.warn({ err: (err as Error).message, queue }, 'resuming consumption failed'))
  }

  private async handle (channel: ConfirmChannel, acks: ChannelAcks, queue: string, msg: ConsumeMessage): Promise<void> {
    const consumer = this.consumers.get(queue)
    const headers = (msg.properties.headers ?? {}) as Record<string, unknown>
    const retries = Number(headers['x-retries'] ?? 0)
    const routingKey = String(headers['x-original-routing-key'] ?? msg.fields.routingKey)
    const messageId = msg.properties.messageId as string | undefined
    if (consumer === undefined) {
      // Cancelled while this delivery was in flight: it goes back to the queue untouched.
      acks.requeue(msg)
      return
    }
    let failure: Failure | undefined
    try {
      await consumer.handler({ content: msg.content, routingKey, messageId, headers, retries })
    } catch (err) {
      failure = this.opts.classify(err)
    }
    if (failure === undefined) {
      acks.ack(msg)
      this.notify('settled', { queue, messageId, routingKey, outcome: 'acked' } satisfies Settlement)
      return
    }
    const transientRetries = Number(headers['x-transient-retries'] ?? 0)
    const dead = !failure.transient && retries >= MAX_RETRIES
    const now = new Date().toISOString()
    const options: Options.Publish = {
      ...msg.properties,
      persistent: true,
      headers: {
        ...headers,
        'x-retries': failure.transient ? retries : retries + 1,
        'x-transient-retries': failure.transient ? transientRetries + 1 : transientRetries,
        'x-failure-reason': failure.reason.slice(0, 500),
        'x-failure-cause': failure.cause,
        'x-original-routing-key': routingKey,
        'x-original-queue': queue,
        'x-first-failed-at': headers['x-first-failed-at'] ?? now,
        ...(dead ? { 'x-dead-lettered-at': now } : {})
      }
    }
    if (dead) {
      delete options.expiration
    } else {
      const delay = failure.transient
        ? Math.min(this.opts.maxRetryDelayMs, this.opts.retryDelayMs * 2 ** transientRetries)
        : this.opts.retryDelayMs * 2 ** retries
      options.expiration = String(delay)
    }
    const target = dead ? `${queue}.dlq` : `${queue}.retry`
    try {
      channel.sendToQueue(target, msg.content, options)
      await channel.waitForConfirms()
      acks.ack(msg)
    } catch {
      // The copy was not confirmed: the message goes back to the queue to be tried again (every delivery is settled,
      // or the bulk acks of the later ones would wait for it).
      acks.requeue(msg)
      return
    }
    this.notify('settled', { queue, messageId, routingKey, outcome: dead ? 'dead-lettered' : 'retried', failure } satisfies Settlement)
    const probe = failure.transient ? consumer.probes[failure.cause] : undefined
    if (probe !== undefined) {
      this.pause(queue, failure, probe)
    } else if (!failure.transient || transientRetries === 0) {
      // A store outage is logged once by pause(); a message's own failures once per try (at most MAX_RETRIES + 1).
      this.opts.log.warn({ queue, retries, cause: failure.cause, reason: failure.reason, target, messageId }, dead ? 'message dead-lettered' : 'message handling failed; retrying')
    }
  }

  /** Emits to listeners that must not change what the broker does: a listener's error is logged, not thrown. */
  private notify (event: string, ...args: unknown[]): void {
    try {
      this.emit(event, ...args)
    } catch (err) {
      this.opts.log.error({ err, event }, 'a broker event listener threw')
    }
  }

  async queueStats (queue: string): Promise<{ messages: number, consumers: number, dlq: number } | undefined> {
    const connection = this.connection
    if (connection === undefined) return undefined
    // A passive check on a missing queue closes the channel, so each check gets a throwaway channel.
    const channel = await connection.createChannel()
    channel.on('error', () => {})
    try {
      const main = await channel.checkQueue(queue)
      const dlq = await channel.checkQueue(`${queue}.dlq`)
      return { messages: main.messageCount, consumers: main.consumerCount, dlq: dlq.messageCount }
    } finally {
      await channel.close().catch(() => {})
    }
  }

  async close (): Promise<void> {
    this.closing = true
    if (this.timer !== undefined) clearTimeout(this.timer)
    for (const state of this.paused.values()) clearTimeout(state.timer)
    this.clearResubscribing()
    const connection = this.connection
    // Acks still waiting for their turn go out before the channels close (a channel's frames keep their order), not
    // back to the queue as redeliveries.
    for (const [channel, acks] of this.consumerChannels) {
      acks.flush()
      await channel.close().catch(() => {})
    }
    this.channel = undefined
    this.connection = undefined
    await connection?.close().catch(() => {})
  }
}
