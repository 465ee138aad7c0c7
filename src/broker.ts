import { EventEmitter } from 'node:events'
import amqp, { type ChannelModel, type ConfirmChannel, type ConsumeMessage, type Options } from 'amqplib'

export interface WorkQueue {
  name: string
  /** Routing-key patterns bound on the topic exchange. */
  bindings: string[]
}

export interface Topology {
  exchange: string
  queues: WorkQueue[]
}

/** DESIGN §7: one topic exchange, two work queues, each with a delayed retry queue and a dead-letter queue. */
export const defaultTopology: Topology = {
  exchange: 'jit.events',
  queues: [
    { name: 'webhooks.process', bindings: ['webhook.#'] },
    { name: 'transactions.archive', bindings: ['#'] }
  ]
}

export const MAX_RETRIES = 3

/**
 * Thrown by a handler whose own dependency is down (not the message's fault): the message waits in the retry queue
 * for the longest retry delay and comes back without using up a retry, so an outage never dead-letters good work.
 */
export class RetryLaterError extends Error {}

export interface Logger {
  info: (obj: object | string, msg?: string) => void
  warn: (obj: object | string, msg?: string) => void
  error: (obj: object | string, msg?: string) => void
}

export interface BrokerOptions {
  topology?: Topology
  prefetch?: number
  retryDelayMs?: number
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

export class BrokerUnavailableError extends Error {
  statusCode = 503
  constructor (message = 'message broker unavailable') { super(message) }
}

/**
 * A RabbitMQ connection that reconnects with backoff, re-asserts the topology and re-subscribes consumers after
 * every reconnect. Publishing fails fast while disconnected, so callers can answer 503 or leave outbox rows waiting.
 */
export class Broker extends EventEmitter {
  private connection?: ChannelModel
  private channel?: ConfirmChannel
  private readonly consumers = new Map<string, Handler>()
  private readonly subscriptions = new Map<string, { channel: ConfirmChannel, consumerTag: string }>()
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
      maxBackoffMs: 10_000,
      publishTimeoutMs: 2000,
      ...options
    }
  }

  get topology (): Topology { return this.opts.topology }
  get connected (): boolean { return this.channel !== undefined }

  /** Starts connecting; resolves after the first attempt, connected or not (the loop goes on in the background). */
  start (): Promise<void> {
    this.firstAttempt ??= this.connect()
    return this.firstAttempt
  }

  private async connect (): Promise<void> {
    if (this.closing) return
    try {
      const connection = await amqp.connect(this.url, { timeout: 2000, noDelay: true })
      connection.on('error', (err) => this.opts.log.warn({ err }, 'rabbitmq connection error'))
      connection.on('close', () => this.onDisconnect())
      const channel = await connection.createConfirmChannel()
      channel.on('error', (err) => this.opts.log.warn({ err }, 'rabbitmq channel error'))
      await this.assertTopology(channel)
      this.connection = connection
      this.channel = channel
      this.attempt = 0
      for (const [queue, handler] of this.consumers) await this.subscribe(queue, handler)
      this.opts.log.info('rabbitmq connected')
      this.emit('connected')
    } catch (err) {
      this.opts.log.warn({ err: (err as Error).message }, 'rabbitmq unreachable; retrying in the background')
      this.scheduleReconnect()
    }
  }

  private onDisconnect (): void {
    const wasConnected = this.channel !== undefined
    this.channel = undefined
    this.connection = undefined
    if (this.closing) return
    if (wasConnected) {
      this.opts.log.warn('rabbitmq connection lost; reconnecting')
      this.emit('disconnected')
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
   * Consumes `queue` with a prefetch; acks after the handler resolves. A failing message is re-queued through the
   * retry queue with a delay, MAX_RETRIES times, then dead-lettered with the failure reason in `x-failure-reason`
   * (a RetryLaterError retries without counting).
   */
  async consume (queue: string, handler: Handler): Promise<void> {
    this.consumers.set(queue, handler)
    if (this.channel !== undefined) await this.subscribe(queue, handler)
  }

  private async subscribe (queue: string, handler: Handler): Promise<void> {
    const connection = this.connection
    if (connection === undefined) return
    const channel = await connection.createConfirmChannel()
    channel.on('error', (err) => this.opts.log.warn({ err, queue }, 'rabbitmq consumer channel error'))
    await channel.prefetch(this.opts.prefetch)
    const { consumerTag } = await channel.consume(queue, (msg) => { if (msg !== null) void this.handle(channel, queue, msg, handler) })
    this.subscriptions.set(queue, { channel, consumerTag })
  }

  /**
   * Stops delivering `queue` to this process (also after reconnects). Messages already handed to the handler keep their
   * channel, so they are still acked (or retried) when it finishes; close the broker after waiting for them.
   */
  async cancel (queue: string): Promise<void> {
    this.consumers.delete(queue)
    const subscription = this.subscriptions.get(queue)
    this.subscriptions.delete(queue)
    await subscription?.channel.cancel(subscription.consumerTag).catch(() => {})
  }

  private async handle (channel: ConfirmChannel, queue: string, msg: ConsumeMessage, handler: Handler): Promise<void> {
    const headers = (msg.properties.headers ?? {}) as Record<string, unknown>
    const retries = Number(headers['x-retries'] ?? 0)
    try {
      await handler({ content: msg.content, routingKey: String(headers['x-original-routing-key'] ?? msg.fields.routingKey), messageId: msg.properties.messageId, headers, retries })
      channel.ack(msg)
    } catch (err) {
      const reason = (err as Error)?.message ?? String(err)
      const later = err instanceof RetryLaterError
      const target = later || retries < MAX_RETRIES ? `${queue}.retry` : `${queue}.dlq`
      const options: Options.Publish = {
        ...msg.properties,
        persistent: true,
        headers: { ...headers, 'x-retries': later ? retries : retries + 1, 'x-failure-reason': reason.slice(0, 500), 'x-original-routing-key': headers['x-original-routing-key'] ?? msg.fields.routingKey }
      }
      if (target.endsWith('.retry')) options.expiration = String(this.opts.retryDelayMs * 2 ** (later ? MAX_RETRIES : retries))
      else delete options.expiration
      try {
        channel.sendToQueue(target, msg.content, options)
        await channel.waitForConfirms()
        channel.ack(msg)
        this.opts.log.warn({ queue, retries, reason, target }, 'message handling failed')
      } catch {
        // The channel is gone: the unacked message returns to the queue by itself.
      }
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
    const connection = this.connection
    this.channel = undefined
    this.connection = undefined
    await connection?.close().catch(() => {})
  }
}
