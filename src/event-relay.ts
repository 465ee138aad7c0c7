import pg from 'pg'
import type { Options } from 'amqplib'
import type { Logger } from './broker.js'
import type { Queryable } from './db.js'
import { eventsOf, type LedgerEvent, type SourceRow } from './events.js'

/** The session advisory lock that elects the one active relay of a database (next to hold expiry's and migrate's). */
export const EVENT_RELAY_LOCK = 727_274_003

/** What the relay needs from the broker (src/broker.ts's Broker fits). */
export interface Publisher {
  readonly connected: boolean
  publish: (routingKey: string, body: unknown, options?: Options.Publish) => Promise<void>
  on: (event: 'connected', listener: () => void) => unknown
  off: (event: 'connected', listener: () => void) => unknown
}

/** Optional instruments (src/metrics.ts's gauges and histogram fit). */
export interface RelayMetrics {
  relayBacklog?: { set: (value: number) => void }
  relayLag?: { set: (value: number) => void }
  publishDuration?: { observe: (seconds: number) => void }
}

/** How long a kick waits for more kicks before the relay's pass starts (EventRelayOptions.coalesceMs's default). */
export const RELAY_COALESCE_MS = 100

/** Whether an answered request of this method may have written rows the relay publishes: anything but a read. */
export const mayHaveWritten = (method: string): boolean => method !== 'GET' && method !== 'HEAD'

export interface EventRelayOptions {
  /** Lag samples and /health; the relay's own reads and cursor writes go through its lock's session. */
  pool: Queryable
  databaseUrl: string
  broker: Publisher
  pollMs: number
  /** How often a standby tries to take the lock (default 3 s). */
  standbyRetryMs?: number
  pageSize?: number
  /**
   * How long a kick waits for more kicks before the pass starts (default 100 ms): a pass costs two PostgreSQL round
   * trips, a commit and a burst of archive writes whatever its size, so fewer, fuller pages; events leave within ~0.1 s.
   */
  coalesceMs?: number
  log: Logger
  metrics?: RelayMetrics
}

export interface RelayLag { backlog: number, lagSeconds: number }
export interface RelayHealth extends RelayLag { active: boolean }

interface Cursor { xid: string, source: string, key: string }
type PageRow = Cursor & SourceRow

// Rows after the cursor in (xid, source, key) order, from transactions that are all finished: below the snapshot's
// xmin nothing can still commit, so a row that waits there is published later, never skipped. Each branch is one
// range scan of its (xid, key) index; the rows of the cursor's own transaction are filtered past it.
const after = (alias: string, source: string, key: string): string =>
  `${alias}.xid >= $1::xid8 AND (${alias}.xid > $1::xid8 OR $2::text < '${source}' OR ($2::text = '${source}' AND ${alias}.${key} > $3::text))`

const PAGE_SQL = `
  (SELECT d.xid, 'decision'::text AS source, d.jit_token AS key, to_jsonb(d) AS row
     FROM decisions d
    WHERE ${after('d', 'decision', 'jit_token')} AND d.xid < pg_snapshot_xmin(pg_current_snapshot())
    ORDER BY d.xid, d.jit_token LIMIT $4)
  UNION ALL
  (SELECT t.xid, 'transfer'::text, t.id,
          to_jsonb(t) || jsonb_build_object('forced',
            CASE WHEN t.code = 'hold.created' THEN (SELECT h.forced FROM holds h WHERE h.jit_token = t.hold_jit_token) END)
     FROM transfers t
    WHERE ${after('t', 'transfer', 'id')} AND t.xid < pg_snapshot_xmin(pg_current_snapshot())
    ORDER BY t.xid, t.id LIMIT $4)
  ORDER BY xid, source, key LIMIT $4`

/** Counting the backlog reads each of its rows: the count stops here (relay_lag_seconds still says how far behind). */
export const BACKLOG_COUNT_LIMIT = 20_000

/**
 * How far the relay is behind (schema/functions/relay_lag.sql): committed rows after the cursor, at most
 * `countLimit` of them, whether or not a running transaction still holds them back, and the age of the older of the
 * next decision and the next transfer to publish.
 */
export async function relayLag (db: Queryable, countLimit = BACKLOG_COUNT_LIMIT): Promise<RelayLag> {
  const { rows } = await db.query<{ backlog: number, lag_seconds: number }>('SELECT backlog, lag_seconds FROM relay_lag($1)', [countLimit])
  return { backlog: rows[0].backlog, lagSeconds: rows[0].lag_seconds }
}

/**
 * Publishes the events of committed decisions and transfers (DESIGN §7), one relay per database: the one holding the
 * session advisory lock EVENT_RELAY_LOCK on its own connection reads pages after the cursor, publishes their events
 * (persistent, confirmed, `message_id` stable per row and routing key), and moves the cursor to the page's last row
 * once every confirm is in, on the same session, so a relay that lost its lock cannot move it. A crash between the
 * confirms and the cursor publishes the page again: at least once, consumers dedupe by message id. Standbys try the
 * lock every `standbyRetryMs` and take over when the holder's session ends.
 * Wakes when kicked (the workers plugin kicks after its instance answered a write), on the broker's reconnect, and
 * every `pollMs` (rows written by other instances).
 */
export class EventRelay {
  private client?: pg.Client
  private cursor?: Cursor
  private pollTimer?: NodeJS.Timeout
  private electTimer?: NodeJS.Timeout
  private scheduled?: NodeJS.Timeout
  private running?: Promise<void>
  private electing?: Promise<void>
  private again = false
  private stopped = true
  private readonly pageSize: number
  private readonly coalesceMs: number
  private readonly standbyRetryMs: number
  private readonly onBrokerConnected = (): void => this.kick()

  constructor (private readonly opts: EventRelayOptions) {
    this.pageSize = opts.pageSize ?? 500
    this.coalesceMs = opts.coalesceMs ?? RELAY_COALESCE_MS
    this.standbyRetryMs = opts.standbyRetryMs ?? 3000
  }

  /** Whether this instance holds the lock (and so is the one publishing). */
  get active (): boolean { return this.cursor !== undefined }

  async start (): Promise<void> {
    if (!this.stopped) return
    this.stopped = false
    this.opts.broker.on('connected', this.onBrokerConnected)
    const poll = (): void => {
      this.pollTimer = setTimeout(() => {
        this.kick()
        void this.sample().finally(() => { if (!this.stopped) poll() })
      }, this.opts.pollMs)
      this.pollTimer.unref()
    }
    poll()
    await this.elect()
  }

  /** Stops waking up, waits for the pass in progress, and ends the session (which releases the lock). */
  async stop (): Promise<void> {
    this.stopped = true
    this.opts.broker.off('connected', this.onBrokerConnected)
    clearTimeout(this.pollTimer)
    clearTimeout(this.electTimer)
    clearTimeout(this.scheduled)
    this.scheduled = undefined
    await this.electing
    await this.running
    await this.drop()
  }

  /**
   * Asks for a pass, which starts `coalesceMs` later so that the kicks of a burst share it. Passes never overlap; a
   * kick during a pass schedules another one after it. A standby ignores kicks.
   */
  kick (): void {
    if (this.stopped || !this.active) return
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
    if (this.stopped) return
    this.again = false
    this.drain().catch((err) => this.opts.log.warn({ err: (err as Error).message }, 'event relay pass failed; the cursor stays'))
  }

  /**
   * Publishes pages until none is full, the broker is down, or this instance is not the active one; resolves with the
   * events published, rejects when a page failed (its cursor stays). Runs after the pass in progress, never beside it.
   */
  async drain (): Promise<number> {
    while (this.running !== undefined) await this.running
    const work = this.publishPages()
    this.running = work.then(() => {}, () => {})
    try {
      return await work
    } finally {
      this.running = undefined
      if (this.again) this.kick()
    }
  }

  private async publishPages (): Promise<number> {
    // The lag gauges are sampled on the poll timer, not after every pass: under load a pass runs every few
    // milliseconds, and a count per pass would cost PostgreSQL as much as the page itself.
    let published = 0
    for (;;) {
      if (this.stopped || !this.active || !this.opts.broker.connected) break
      const page = await this.publishPage()
      published += page.events
      if (page.rows < this.pageSize) break
    }
    return published
  }

  /** One page: read, publish every event, await the confirms together, then move the cursor past the page. */
  private async publishPage (): Promise<{ rows: number, events: number }> {
    const client = this.client
    const cursor = this.cursor
    if (client === undefined || cursor === undefined) return { rows: 0, events: 0 }
    const { rows } = await client.query<PageRow>(PAGE_SQL, [cursor.xid, cursor.source, cursor.key, this.pageSize])
    if (rows.length === 0) return { rows: 0, events: 0 }
    const events = rows.flatMap((row) => eventsOf(row))
    const results = await Promise.allSettled(events.map((event) => this.publish(event)))
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failed !== undefined) throw failed.reason
    const last = rows[rows.length - 1]
    await client.query('UPDATE event_cursor SET xid = $1::xid8, source = $2, key = $3, updated_at = now()', [last.xid, last.source, last.key])
    if (this.client === client) this.cursor = { xid: last.xid, source: last.source, key: last.key }
    return { rows: rows.length, events: events.length }
  }

  private async publish (event: LedgerEvent): Promise<void> {
    const started = performance.now()
    await this.opts.broker.publish(event.routingKey, event.payload, {
      messageId: event.messageId,
      persistent: true,
      type: event.routingKey,
      timestamp: Math.floor(event.createdAt.getTime() / 1000)
    })
    this.opts.metrics?.publishDuration?.observe((performance.now() - started) / 1000)
  }

  /** Sets the backlog and lag gauges; undefined when PostgreSQL does not answer. */
  async sample (): Promise<RelayLag | undefined> {
    try {
      const lag = await relayLag(this.opts.pool)
      this.opts.metrics?.relayBacklog?.set(lag.backlog)
      this.opts.metrics?.relayLag?.set(lag.lagSeconds)
      return lag
    } catch {
      return undefined
    }
  }

  /** For /health: whether this instance is the active relay, and the lag (throws when PostgreSQL does not answer). */
  async health (): Promise<RelayHealth> {
    return { active: this.active, ...await relayLag(this.opts.pool) }
  }

  /** Tries to take the lock, on a session kept open while standing by; retries every `standbyRetryMs` until it has it. */
  private async elect (): Promise<void> {
    if (this.stopped || this.active || this.electing !== undefined) return
    this.electing = this.tryLock().finally(() => { this.electing = undefined })
    await this.electing
    if (!this.active) this.retryElection()
  }

  private retryElection (): void {
    if (this.stopped || this.electTimer !== undefined) return
    this.electTimer = setTimeout(() => {
      this.electTimer = undefined
      void this.elect()
    }, this.standbyRetryMs)
    this.electTimer.unref()
  }

  private async tryLock (): Promise<void> {
    try {
      const client = this.client ?? await this.connect()
      if (client === undefined) return
      const { rows } = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1) AS locked', [EVENT_RELAY_LOCK])
      if (!rows[0].locked) return
      const cursor = (await client.query<Cursor>('SELECT xid::text AS xid, source, key FROM event_cursor')).rows[0]
      if (this.client !== client) return
      this.cursor = cursor
      this.opts.log.info({ cursor }, 'event relay active')
      this.kick()
    } catch (err) {
      this.opts.log.warn({ err: (err as Error).message }, 'event relay could not try its lock; trying again')
      await this.drop()
    }
  }

  private async connect (): Promise<pg.Client | undefined> {
    const client = new pg.Client({ connectionString: this.opts.databaseUrl, application_name: 'jit-gateway-relay' })
    const lost = (reason: string): void => {
      if (this.client !== client) return
      const wasActive = this.active
      this.client = undefined
      this.cursor = undefined
      client.end().catch(() => {})
      if (this.stopped) return
      if (wasActive) this.opts.log.warn({ err: reason }, 'event relay lost its session (and its lock); standing by')
      this.retryElection()
    }
    client.on('error', (err) => lost(err.message))
    client.on('end', () => lost('connection ended'))
    await client.connect()
    if (this.stopped) {
      await client.end().catch(() => {})
      return undefined
    }
    this.client = client
    return client
  }

  private async drop (): Promise<void> {
    const client = this.client
    this.client = undefined
    this.cursor = undefined
    await client?.end().catch(() => {})
  }
}
