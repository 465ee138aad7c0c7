import pg from 'pg'
import type { Options } from 'amqplib'
import type { Logger } from './broker.js'

/** What the relay needs from the broker (src/broker.ts's Broker fits). */
export interface Publisher {
  readonly connected: boolean
  publish: (routingKey: string, body: unknown, options?: Options.Publish) => Promise<void>
  on: (event: 'connected', listener: () => void) => unknown
  off: (event: 'connected', listener: () => void) => unknown
}

/** Optional instruments (src/metrics.ts's gauges and histogram fit). */
export interface RelayMetrics {
  outboxBacklog?: { set: (value: number) => void }
  outboxLag?: { set: (value: number) => void }
  publishDuration?: { observe: (seconds: number) => void }
}

export interface OutboxRelayOptions {
  pool: pg.Pool
  /** The LISTEN connection is a dedicated client: a pooled one would be handed to other queries. */
  databaseUrl: string
  broker: Publisher
  pollMs: number
  batchSize?: number
  /** How long a kick waits for more kicks before the pass starts (default 5 ms): fewer, fuller batches under load. */
  coalesceMs?: number
  log: Logger
  metrics?: RelayMetrics
}

interface OutboxRow {
  id: string
  routing_key: string
  payload: Record<string, unknown>
  created_at: Date
}

export interface RelayPass { published: number, failed: number }

/**
 * Moves outbox rows to the exchange (DESIGN §7): a batch is locked with FOR UPDATE SKIP LOCKED, so several instances
 * take disjoint batches; every row is published persistent with `message_id` = its id, and the batch is marked
 * published only for the rows the broker confirmed, in the same transaction that locked them. If the process dies
 * between the confirm and the commit, the rows are published again: at least once, consumers dedupe by id.
 * Wakes when kicked (the workers plugin kicks after every write its instance answers), on NOTIFY 'outbox' from
 * writers outside the process, every `pollMs` as the fallback (rows written by other instances), and on the broker's
 * reconnect.
 */
export class OutboxRelay {
  private listener?: pg.Client
  private pollTimer?: NodeJS.Timeout
  private reconnectTimer?: NodeJS.Timeout
  private scheduled?: NodeJS.Timeout
  private running?: Promise<void>
  private again = false
  private stopped = true
  private readonly batchSize: number
  private readonly coalesceMs: number
  private readonly onBrokerConnected = (): void => this.kick()

  constructor (private readonly opts: OutboxRelayOptions) {
    this.batchSize = opts.batchSize ?? 200
    this.coalesceMs = opts.coalesceMs ?? 5
  }

  async start (): Promise<void> {
    if (!this.stopped) return
    this.stopped = false
    this.opts.broker.on('connected', this.onBrokerConnected)
    await this.listen()
    const poll = (): void => {
      this.pollTimer = setTimeout(() => {
        this.kick()
        void this.sample().finally(() => { if (!this.stopped) poll() })
      }, this.opts.pollMs)
      this.pollTimer.unref()
    }
    poll()
    this.kick()
  }

  /** Stops waking up, waits for the pass in progress, and closes the LISTEN connection. */
  async stop (): Promise<void> {
    this.stopped = true
    this.opts.broker.off('connected', this.onBrokerConnected)
    clearTimeout(this.pollTimer)
    clearTimeout(this.reconnectTimer)
    clearTimeout(this.scheduled)
    this.scheduled = undefined
    await this.running
    const listener = this.listener
    this.listener = undefined
    await listener?.end().catch(() => {})
  }

  /**
   * Asks for a pass, which starts `coalesceMs` later so that the kicks of a burst share it. Passes never overlap in
   * one process; a kick during a pass schedules another one after it. (Passes started on every kick were mostly
   * empty under load: more outbox SELECTs than decisions.)
   */
  kick (): void {
    if (this.stopped) return
    if (this.running !== undefined) {
      this.again = true
      return
    }
    if (this.scheduled !== undefined) return
    this.scheduled = setTimeout(() => {
      this.scheduled = undefined
      this.pass()
    }, this.coalesceMs)
  }

  private pass (): void {
    if (this.stopped || this.running !== undefined) return
    this.again = false
    this.running = this.drain()
      .then(() => {}, (err) => this.opts.log.warn({ err: (err as Error).message }, 'outbox relay pass failed'))
      .finally(() => {
        this.running = undefined
        if (this.again) this.kick()
      })
  }

  /** Publishes until the outbox is empty, the broker is down, or a batch fails. Resolves with the totals. */
  async drain (): Promise<RelayPass> {
    const total: RelayPass = { published: 0, failed: 0 }
    for (;;) {
      if (!this.opts.broker.connected) break
      let pass: RelayPass
      try {
        pass = await this.publishBatch()
      } catch (err) {
        this.opts.log.warn({ err: (err as Error).message }, 'outbox relay pass failed; rows stay for the next one')
        break
      }
      total.published += pass.published
      total.failed += pass.failed
      if (pass.failed > 0 || pass.published < this.batchSize) break
    }
    if (total.published > 0) await this.sample()
    return total
  }

  /** One batch in one transaction: lock, publish concurrently, mark the confirmed ones. */
  async publishBatch (): Promise<RelayPass> {
    const client = await this.opts.pool.connect()
    try {
      await client.query('BEGIN')
      const { rows } = await client.query<OutboxRow>(
        `SELECT id, routing_key, payload, created_at FROM outbox WHERE published_at IS NULL
          ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED`, [this.batchSize])
      const results = await Promise.allSettled(rows.map((row) => this.publishRow(row)))
      const confirmed = rows.filter((_row, i) => results[i].status === 'fulfilled').map((row) => row.id)
      if (confirmed.length > 0) {
        await client.query('UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])', [confirmed])
      }
      await client.query('COMMIT')
      const failed = rows.length - confirmed.length
      if (failed > 0) {
        const reason = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')?.reason as Error | undefined
        this.opts.log.warn({ failed, err: reason?.message }, 'outbox rows not confirmed; they will be published again')
      }
      return { published: confirmed.length, failed }
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {})
      throw err
    } finally {
      client.release()
    }
  }

  private async publishRow (row: OutboxRow): Promise<void> {
    const started = performance.now()
    const createdAt = row.created_at.toISOString()
    await this.opts.broker.publish(row.routing_key, { ...row.payload, event_id: row.id, created_at: createdAt }, {
      messageId: row.id,
      persistent: true,
      type: row.routing_key,
      timestamp: Math.floor(row.created_at.getTime() / 1000)
    })
    this.opts.metrics?.publishDuration?.observe((performance.now() - started) / 1000)
  }

  /** Backlog and lag gauges (the oldest unpublished row's age); the partial index keeps this cheap. */
  async sample (): Promise<{ backlog: number, lagSeconds: number } | undefined> {
    try {
      const { rows } = await this.opts.pool.query<{ backlog: string, lag: number | null }>(
        `SELECT count(*) AS backlog, extract(epoch FROM now() - min(created_at))::float8 AS lag
           FROM outbox WHERE published_at IS NULL`)
      const backlog = Number(rows[0].backlog)
      const lagSeconds = Math.max(0, rows[0].lag ?? 0)
      this.opts.metrics?.outboxBacklog?.set(backlog)
      this.opts.metrics?.outboxLag?.set(lagSeconds)
      return { backlog, lagSeconds }
    } catch {
      return undefined
    }
  }

  private async listen (): Promise<void> {
    if (this.stopped) return
    const client = new pg.Client({ connectionString: this.opts.databaseUrl, application_name: 'jit-gateway-outbox' })
    const retry = (reason: string): void => {
      if (this.listener === client) this.listener = undefined
      client.end().catch(() => {})
      if (this.stopped || this.reconnectTimer !== undefined) return
      this.opts.log.warn({ err: reason }, 'outbox LISTEN connection lost; polling until it is back')
      this.reconnectTimer = setTimeout(() => {
        this.reconnectTimer = undefined
        void this.listen()
      }, Math.max(1000, this.opts.pollMs))
      this.reconnectTimer.unref()
    }
    client.on('error', (err) => retry(err.message))
    client.on('end', () => { if (this.listener === client) retry('connection ended') })
    client.on('notification', () => this.kick())
    try {
      await client.connect()
      await client.query('LISTEN outbox')
      if (this.stopped) {
        await client.end().catch(() => {})
        return
      }
      this.listener = client
      // Rows written while we were not listening.
      this.kick()
    } catch (err) {
      retry((err as Error).message)
    }
  }
}
