import t from 'tap'
import pg from 'pg'
import { randomBytes } from 'node:crypto'
import { build, eventually, scratchDatabase, uniq, type Teardown } from '../helper.js'
import { Broker, BrokerUnavailableError } from '../../src/broker.js'
import { EVENT_RELAY_LOCK, EventRelay, relayLag, type EventRelayOptions, type Publisher } from '../../src/event-relay.js'
import { eventsOf, type SourceRow } from '../../src/events.js'
import { migrate } from '../../src/migrate.js'
import { RABBITMQ_URL, tapExchange, type Tapped } from './webhooks-helpers.js'

const silent = { info: () => {}, warn: () => {}, error: () => {} }

interface Setup {
  databaseUrl: string
  pool: pg.Pool
  broker: Broker
  /** Every message on this test's own exchange, in arrival order. */
  seen: Tapped[]
  relay: (options?: Partial<EventRelayOptions>) => EventRelay
}

/**
 * A database of its own (the apps of other test files run relays on the shared one), migrated, and an exchange of its
 * own with a queue bound to everything.
 */
async function setup (t: Teardown): Promise<Setup> {
  const databaseUrl = await scratchDatabase(t, 'relay')
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 4 })
  t.teardown(() => pool.end())
  await migrate(pool)
  const exchange = `test.relay.${randomBytes(4).toString('hex')}`
  const seen = await tapExchange(t, ['#'], exchange)
  const broker = new Broker(RABBITMQ_URL, { log: silent, topology: { exchange, queues: [] } })
  await broker.start()
  t.teardown(() => broker.close())
  const relay = (options: Partial<EventRelayOptions> = {}): EventRelay => {
    const r = new EventRelay({ pool, databaseUrl, broker, pollMs: 60_000, standbyRetryMs: 100, log: silent, ...options })
    t.teardown(() => r.stop())
    return r
  }
  return { databaseUrl, pool, broker, seen, relay }
}

/** A cardholder with a card and `loadMinor` loaded by the admin path; returns the tokens and the load's effect key. */
async function cardholder (pool: pg.Pool, loadMinor = 10_000): Promise<{ user: string, card: string, load: string }> {
  const user = uniq('u')
  const card = uniq('c')
  await pool.query('INSERT INTO users (token) VALUES ($1)', [user])
  await pool.query('INSERT INTO cards (token, user_token) VALUES ($1, $2)', [card, user])
  const load = await loadFunds(pool, user, loadMinor)
  return { user, card, load }
}

async function loadFunds (db: pg.Pool | pg.Client, user: string, amountMinor: number): Promise<string> {
  const key = `admin:load:${uniq('k')}`
  await db.query('SELECT ledger_admin_move($1::jsonb, \'load\')',
    [JSON.stringify({ user_token: user, currency_code: 'USD', amount_minor: String(amountMinor), effect_key: key, reference: `ref-${key}` })])
  return key
}

/** One authorization hold decided by jit_decide, as src/jit/decide.ts shapes it. */
async function authorize (pool: pg.Pool | pg.PoolClient, holder: { user: string, card: string }, amountMinor: number): Promise<{ jit: string, status: number }> {
  const jit = uniq('j')
  const item = {
    echo: { token: jit, method: 'pgfs.authorization', user_token: holder.user },
    mode: 'decide',
    amount_text: (amountMinor / 100).toFixed(2),
    exponent: 2,
    currency_code: 'USD',
    card_token: holder.card,
    effect: { kind: 'hold', effect_key: `${jit}:hold`, user_token: holder.user, currency_code: 'USD', amount_minor: String(amountMinor), jit_token: jit, card_token: holder.card },
    request: { token: `t-${jit}` }
  }
  const { rows } = await pool.query<{ status_code: number }>('SELECT * FROM jit_decide(ARRAY[$1::jsonb])', [JSON.stringify(item)])
  return { jit, status: rows[0].status_code }
}

/** The message ids every committed row implies, in (xid, source, key) order: what the relay owes. */
async function owed (pool: pg.Pool): Promise<string[]> {
  const { rows } = await pool.query<SourceRow & { xid: string }>(
    `SELECT xid, 'decision' AS source, jit_token AS key, to_jsonb(d) AS row FROM decisions d
     UNION ALL
     SELECT xid, 'transfer', id, to_jsonb(t) FROM transfers t
     ORDER BY 1, 2, 3`)
  return rows.flatMap((row) => eventsOf(row)).map((e) => e.messageId)
}

/**
 * Waits until a marker published after the relays' work has arrived, then removes it: whatever they published (and
 * had confirmed) before it is in the queue ahead of it, so a duplicate would have arrived too.
 */
async function afterEverything (broker: Broker, seen: Tapped[]): Promise<void> {
  const marker = `marker-${randomBytes(4).toString('hex')}`
  await broker.publish('test.marker', { marker }, { messageId: marker })
  await eventually(async () => seen.some((m) => m.messageId === marker), 5000, 10)
  seen.splice(seen.findIndex((m) => m.messageId === marker), 1)
}

const cursorOf = async (pool: pg.Pool): Promise<unknown> => (await pool.query('SELECT xid::text, source, key FROM event_cursor')).rows[0]

t.test('rows written by the ledger are published once each, with the routing keys and payloads consumers read', async (t) => {
  const { pool, broker, seen, relay } = await setup(t)
  const holder = await cardholder(pool, 500)
  const approved = await authorize(pool, holder, 300)
  t.equal(approved.status, 200)
  const declined = await authorize(pool, holder, 300)
  t.equal(declined.status, 402, 'only 200 left')

  const r = relay({ pollMs: 50 })
  await r.start()
  const expected = await owed(pool)
  t.equal(expected.length, 4, 'a load, an approval and its hold, a decline')
  await eventually(async () => seen.length >= expected.length)
  await afterEverything(broker, seen)
  t.same(seen.map((m) => m.messageId), expected, 'each once, in xid order')

  const byKey = (key: string): Tapped => seen.find((m) => m.routingKey === key)!
  t.match(byKey('ledger.load').body, {
    user_token: holder.user, currency_code: 'USD', amount_minor: 500, token: `ref-${holder.load}`, effect_key: holder.load,
    event_id: `transfer:${holder.load}:ledger.load`
  })
  t.match(byKey('jit.approved.pgfs.authorization'), {
    messageId: `decision:${approved.jit}:jit.approved.pgfs.authorization`,
    body: {
      jit_token: approved.jit, method: 'pgfs.authorization', result: 'approved', decline_reason: null, user_token: holder.user,
      card_token: holder.card, request: { token: `t-${approved.jit}` }, overdrawn: false,
      response: { jit_funding: { token: approved.jit, amount: 3, method: 'pgfs.authorization', user_token: holder.user } }
    }
  })
  t.match(byKey('ledger.hold.created').body, { jit_token: approved.jit, user_token: holder.user, amount_minor: 300, currency_code: 'USD', forced: false })
  t.match(byKey('jit.declined.pgfs.authorization').body, { jit_token: declined.jit, result: 'declined', decline_reason: 'INSUFFICIENT_FUNDS' })
  t.ok(!Number.isNaN(Date.parse(byKey('ledger.load').body.created_at)), 'created_at')

  // Later rows wake the relay on a kick; nothing already published goes again.
  const more = await authorize(pool, holder, 100)
  r.kick()
  await eventually(async () => seen.some((m) => m.messageId === `decision:${more.jit}:ledger.hold.created`))
  await afterEverything(broker, seen)
  t.same(seen.map((m) => m.messageId), await owed(pool))
  t.same(await r.health(), { active: true, backlog: 0, lagSeconds: 0 })
})

t.test('a transaction still open holds back the rows committed after it took its xid; then both go, in xid order', async (t) => {
  const { databaseUrl, pool, broker, seen, relay } = await setup(t)
  const early = await cardholder(pool, 100)
  const late = await cardholder(pool, 100)
  const r = relay()
  await r.start()
  await eventually(async () => r.active)
  await r.drain()
  await eventually(async () => seen.length >= 2)
  const published = seen.length

  const open = new pg.Client({ connectionString: databaseUrl })
  await open.connect()
  t.teardown(() => open.end())
  await open.query('BEGIN')
  await open.query('SELECT pg_current_xact_id()')
  const lateLoad = await loadFunds(pool, late.user, 200)
  const earlyLoad = await loadFunds(open, early.user, 300)

  t.equal(await r.drain(), 0, 'the committed row waits behind the open transaction')
  t.match(await r.health(), { active: true, backlog: 1 }, 'and counts as behind')
  await afterEverything(broker, seen)
  t.equal(seen.length, published)

  await open.query('COMMIT')
  // Another database's transaction may hold the cluster's xmin back a moment longer.
  await eventually(async () => { await r.drain(); return seen.length >= published + 2 })
  t.same(seen.slice(published).map((m) => m.messageId),
    [`transfer:${earlyLoad}:ledger.load`, `transfer:${lateLoad}:ledger.load`], 'the earlier xid first')
  t.same(seen.map((m) => m.messageId), await owed(pool))
})

t.test('the lag counts the rows after the cursor wherever it stands, in a transaction\'s rows too', async (t) => {
  const { pool } = await setup(t)
  const holder = await cardholder(pool, 1000)
  await authorize(pool, holder, 100)
  // Two decisions and a transfer under one xid: the cursor stands between rows of one transaction, and of each source.
  const client = await pool.connect()
  try {
    await client.query('BEGIN')
    await authorize(client, holder, 100)
    await loadFunds(client, holder.user, 50)
    await authorize(client, holder, 100)
    await client.query('COMMIT')
  } finally {
    client.release()
  }
  await authorize(pool, holder, 100)
  const { rows } = await pool.query<{ xid: string, source: string, key: string }>(
    `SELECT xid, 'decision' AS source, jit_token AS key FROM decisions
     UNION ALL
     SELECT xid, 'transfer', id FROM transfers
     ORDER BY 1, 2, 3`)
  t.ok(rows.some((r, i) => i > 0 && r.xid === rows[i - 1].xid), 'some transaction wrote several rows')
  for (const [i, at] of rows.entries()) {
    await pool.query('UPDATE event_cursor SET xid = $1::xid8, source = $2, key = $3', [at.xid, at.source, at.key])
    const behind = rows.length - i - 1
    t.equal((await relayLag(pool)).backlog, behind, `cursor on row ${i + 1} of ${rows.length} (${at.source})`)
    t.equal((await relayLag(pool, 2)).backlog, Math.min(2, behind), 'and counted up to a limit')
    if (behind === 0) t.equal((await relayLag(pool)).lagSeconds, 0, 'nothing behind, no lag')
  }
})

t.test('the broker unreachable: the cursor stays, nothing is lost, and everything goes once it is back', async (t) => {
  const { databaseUrl, pool, broker, seen, relay } = await setup(t)
  const holder = await cardholder(pool, 1000)
  for (let i = 0; i < 5; i++) await authorize(pool, holder, 100)
  const expected = await owed(pool)
  const cursor = await cursorOf(pool)

  // Refuses everything, then every third publish: the page's confirmed events go again with the same ids.
  let refuse: (n: number) => boolean = () => true
  let calls = 0
  const flaky: Publisher = {
    get connected () { return broker.connected },
    publish: async (key, body, options) => {
      if (refuse(++calls)) throw new BrokerUnavailableError('not confirmed')
      await broker.publish(key, body, options)
    },
    on: (event, listener) => broker.on(event, listener),
    off: (event, listener) => broker.off(event, listener)
  }
  const r = relay({ broker: flaky })
  await r.start()
  await eventually(async () => r.active)
  await t.rejects(r.drain(), { message: 'not confirmed' })
  t.same(await cursorOf(pool), cursor, 'the cursor has not moved')
  t.match(await r.health(), { backlog: 6 }, 'a load and five decisions behind')
  t.match(await relayLag(pool, 4), { backlog: 4 }, 'counted up to the limit asked for')
  const ageOfOldest = async (): Promise<number> => (await pool.query<{ age: number }>(
    `SELECT extract(epoch FROM now() - min(created_at))::float8 AS age
       FROM (SELECT created_at FROM decisions UNION ALL SELECT created_at FROM transfers) r`)).rows[0].age
  const before = await ageOfOldest()
  const { lagSeconds } = await relayLag(pool, 4)
  const after = await ageOfOldest()
  t.ok(before > 0 && before <= lagSeconds && lagSeconds <= after, `the lag is the age of the oldest row behind, the load (${before} <= ${lagSeconds} <= ${after})`)

  refuse = (n) => n % 3 === 0
  await t.rejects(r.drain(), { message: 'not confirmed' })
  t.same(await cursorOf(pool), cursor, 'a page with one refusal does not move it either')
  refuse = () => false
  // A pass the relay scheduled itself (a kick, its timer) may publish the page before this one: either way the page
  // goes out and the cursor moves past it.
  await r.drain()
  t.match(await r.health(), { backlog: 0 }, 'the cursor moved past everything')
  await afterEverything(broker, seen)
  const ids = seen.map((m) => m.messageId!)
  t.same([...new Set(ids)].sort(), [...expected].sort(), 'every event arrived')
  t.ok(ids.length > expected.length, 'some twice (at least once), under the same message id for consumers to drop')
  t.match(await r.health(), { backlog: 0 })

  // The app's wiring: a worker without its broker takes over the relay and reports the rows behind in /health and
  // the gauges.
  await r.stop()
  await loadFunds(pool, holder.user, 100)
  const down = await build(t, { DATABASE_URL: databaseUrl, RABBITMQ_URL: 'amqp://guest:guest@127.0.0.1:1', RELAY_POLL_MS: '50' })
  await eventually(async () => (await down.telemetry.relayBacklog.get()).values[0]?.value === 1)
  const health = await eventually(async () => {
    const body = (await down.inject('/health')).json()
    return body.postgres.relay_active === true ? body : undefined
  })
  t.match(health.postgres, { relay_backlog: 1, relay_lag_seconds: Number })
})

t.test('two relays on one database: one publishes; when its session ends the other takes over, no duplicate, no gap', async (t) => {
  const { pool, broker, seen, relay } = await setup(t)
  const holder = await cardholder(pool, 100_000)
  const a = relay({ pollMs: 50 })
  const b = relay({ pollMs: 50 })
  await Promise.all([a.start(), b.start()])
  await eventually(async () => a.active || b.active)
  for (let i = 0; i < 10; i++) await authorize(pool, holder, 100)
  t.ok(a.active !== b.active, 'exactly one is active')
  const [active, standby] = a.active ? [a, b] : [b, a]
  await eventually(async () => (await active.health()).backlog === 0)

  // The active relay's session dies, and its lock with it: whichever relay takes the lock next goes on from the cursor.
  const { rowCount } = await pool.query(
    `SELECT pg_terminate_backend(pid) FROM pg_locks
      WHERE locktype = 'advisory' AND granted AND objid = $1 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
    [EVENT_RELAY_LOCK])
  t.equal(rowCount, 1)
  await eventually(async () => !active.active)
  for (let i = 0; i < 10; i++) await authorize(pool, holder, 100)
  await eventually(async () => a.active || b.active)
  await eventually(async () => (await standby.health()).backlog === 0)
  await afterEverything(broker, seen)
  t.same(seen.map((m) => m.messageId), await owed(pool), 'every event once, in xid order')
  t.equal(seen.length, 1 + 20 * 2)

  // The active one stops (its client closed): the other takes over.
  const [stopping, other] = a.active ? [a, b] : [b, a]
  await stopping.stop()
  await authorize(pool, holder, 100)
  await eventually(async () => other.active)
  await eventually(async () => seen.length >= 43)
  await afterEverything(broker, seen)
  t.same(seen.map((m) => m.messageId), await owed(pool), 'every event once, in xid order')
})
