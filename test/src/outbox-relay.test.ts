import t from 'tap'
import pg from 'pg'
import { randomBytes } from 'node:crypto'
import { build, eventually, TEST_DATABASE_URL } from '../helper.js'
import { Broker, BrokerUnavailableError } from '../../src/broker.js'
import { OutboxRelay, type Publisher } from '../../src/outbox-relay.js'
import { migrate } from '../../src/migrate.js'
import { pruneOutbox } from '../../src/outbox-retention.js'
import type { Queryable } from '../../src/db.js'
import { RABBITMQ_URL, tapExchange } from './webhooks-helpers.js'

const silent = { info: () => {}, warn: () => {}, error: () => {} }

/**
 * This file gets a database of its own: every app of the other test files runs a relay on the shared one, so only
 * here can "the rows wait while the broker is down" be observed.
 */
async function ownDatabase (t: { teardown: (fn: () => unknown) => void }): Promise<string> {
  const name = `relay_${randomBytes(5).toString('hex')}`
  const admin = new pg.Client({ connectionString: TEST_DATABASE_URL })
  await admin.connect()
  await admin.query(`CREATE DATABASE ${name}`)
  await admin.end()
  const url = new URL(TEST_DATABASE_URL)
  url.pathname = `/${name}`
  t.teardown(async () => {
    const c = new pg.Client({ connectionString: TEST_DATABASE_URL })
    await c.connect()
    await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
    await c.end()
  })
  return url.toString()
}

/** `count` events through emit() (the ledger's own way); returns their ids. */
async function emitRows (db: Queryable, prefix: string, count: number): Promise<string[]> {
  await db.query(`SELECT emit($1 || '.' || i, jsonb_build_object('i', i)) FROM generate_series(1, $2::int) i`, [prefix, count])
  const { rows } = await db.query<{ id: string }>(`SELECT id FROM outbox WHERE routing_key LIKE $1 || '.%' ORDER BY id`, [prefix])
  return rows.map((r) => r.id)
}

/**
 * Waits until a marker published after every relay stopped has arrived, then removes it: whatever the relays
 * published (and had confirmed) before it is in the queue ahead of it, so a duplicate would have arrived too.
 */
async function afterEverything (broker: Pick<Broker, 'publish'>, routingKey: string, seen: Array<{ messageId?: string }>): Promise<void> {
  const marker = `marker-${randomBytes(4).toString('hex')}`
  await broker.publish(routingKey, { marker }, { messageId: marker })
  await eventually(async () => seen.some((m) => m.messageId === marker), 5000, 10)
  seen.splice(seen.findIndex((m) => m.messageId === marker), 1)
}

const unpublished = async (db: Queryable): Promise<number> =>
  Number((await db.query('SELECT count(*) AS n FROM outbox WHERE published_at IS NULL')).rows[0].n)

t.test('broker down: the rows wait; an instance with the broker up publishes every one of them, by NOTIFY too', async (t) => {
  const databaseUrl = await ownDatabase(t)
  const prefix = `test.relay.${randomBytes(4).toString('hex')}`

  // With its workers (RUN_WORKERS defaults to true), but a broker that never answers: nothing is consumed either.
  const down = await build(t, { DATABASE_URL: databaseUrl, RABBITMQ_URL: 'amqp://guest:guest@127.0.0.1:1', OUTBOX_POLL_MS: '50' })
  const ids = await emitRows(down.db, prefix, 250)
  t.equal(ids.length, 250)
  // The relay has run its passes (it samples the backlog it could not publish) and the rows have waited a while.
  await eventually(async () => (await down.telemetry.outboxBacklog.get()).values[0]?.value === 250)
  await eventually(async () => (await down.telemetry.outboxLag.get()).values[0]?.value > 0.3)
  t.equal(await unpublished(down.db), 250, 'nothing published, nothing lost')
  const health = (await down.inject('/health')).json()
  t.equal(health.postgres.outbox_backlog, 250)

  const seen = await tapExchange(t, [`${prefix}.#`])
  // The relay alone: this app's database is not the one of the other files' webhooks, so it must not consume the
  // shared work queues (RUN_WORKERS=false). A long poll interval: the backlog drains on start, a new row on its NOTIFY.
  const up = await build(t, { DATABASE_URL: databaseUrl, RUN_WORKERS: 'false' })
  const relay = new OutboxRelay({ pool: up.db.pool, databaseUrl, broker: up.broker, pollMs: 60_000, log: silent, metrics: up.telemetry })
  await relay.start()
  t.teardown(() => relay.stop())
  await eventually(async () => seen.length >= 250, 15_000)
  // Rows are marked after their confirm, so the last batch may still be committing.
  await eventually(async () => (await unpublished(up.db)) === 0)

  const started = Date.now()
  // A writer outside the relay's process (emit() itself does not notify: migration 009) wakes it with NOTIFY.
  const [late] = await emitRows(up.db, `${prefix}.late`, 1)
  await up.db.query("SELECT pg_notify('outbox', '')")
  const lateMsg = await eventually(async () => seen.find((m) => m.messageId === late), 5000, 10)
  t.ok(Date.now() - started < 2000, `published on NOTIFY in ${Date.now() - started} ms, not on the 60 s poll`)
  await relay.stop()
  await afterEverything(up.broker, `${prefix}.zz`, seen)

  const all = [...ids, late]
  const got = seen.map((m) => m.messageId)
  t.equal(got.length, all.length, 'each row once')
  t.same([...got].sort(), [...all].sort(), 'the same ids')
  const numeric = all.map(Number)
  t.equal(numeric[numeric.length - 1] - numeric[0] + 1, numeric.length, 'no gaps')
  const first = seen.find((m) => m.messageId === ids[0])!
  t.equal(first.routingKey, `${prefix}.1`)
  t.match(first.body, { i: 1, event_id: ids[0] })
  t.ok(!Number.isNaN(Date.parse(first.body.created_at)), 'created_at')
  t.match(lateMsg.body, { event_id: late })
  t.same(await relay.sample(), { backlog: 0, lagSeconds: 0 })
  t.equal((await up.telemetry.outboxBacklog.get()).values[0]?.value, 0)
  t.ok((await up.telemetry.publishDuration.get()).values.some((v) => v.metricName?.endsWith('_count') && v.value >= all.length), 'publish latency measured')
})

t.test('two relays at once never publish the same row twice, and only confirmed rows are marked', async (t) => {
  const databaseUrl = await ownDatabase(t)
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 6 })
  t.teardown(() => pool.end())
  await migrate(pool)
  const prefix = `test.relay.${randomBytes(4).toString('hex')}`

  // A publisher that refuses every third row: those rows stay for the next pass.
  let refuse = true
  let calls = 0
  const published: string[] = []
  const flaky: Publisher = {
    connected: true,
    publish: async (_key, _body, options) => {
      calls++
      if (refuse && calls % 3 === 0) throw new BrokerUnavailableError('not confirmed')
      published.push(String(options?.messageId))
    },
    on: () => undefined,
    off: () => undefined
  }
  const ids = await emitRows(pool, prefix, 30)
  const relay = new OutboxRelay({ pool, databaseUrl, broker: flaky, pollMs: 1000, log: silent, batchSize: 100 })
  const pass = await relay.publishBatch()
  t.same(pass, { published: 20, failed: 10 })
  t.equal(await unpublished(pool), 10)
  refuse = false
  t.match(await relay.drain(), { published: 10, failed: 0 })
  t.same([...published].sort(), [...ids].sort())

  // An exchange of this test's own: a thousand events are no business of the shared archive queue.
  const exchange = `test.relay.${randomBytes(4).toString('hex')}`
  const seen = await tapExchange(t, ['#'], exchange)
  const broker = new Broker(RABBITMQ_URL, { log: silent, topology: { exchange, queues: [] } })
  await broker.start()
  t.teardown(() => broker.close())
  const more = await emitRows(pool, `${prefix}.more`, 1000)
  const a = new OutboxRelay({ pool, databaseUrl, broker, pollMs: 1000, log: silent, batchSize: 50 })
  const b = new OutboxRelay({ pool, databaseUrl, broker, pollMs: 1000, log: silent, batchSize: 50 })
  const [pa, pb] = await Promise.all([a.drain(), b.drain()])
  t.equal(pa.published + pb.published, 1000, `both worked (${pa.published} + ${pb.published}), 1000 in all`)
  await eventually(async () => seen.length >= 1000)
  await afterEverything(broker, `${prefix}.zz`, seen)
  t.equal(seen.length, 1000, 'no row published twice')
  t.same(seen.map((m) => m.messageId).sort(), [...more].sort())
})

t.test('retention: published rows past it are deleted range by range; unpublished and recent rows stay', async (t) => {
  const pool = new pg.Pool({ connectionString: await ownDatabase(t), max: 2 })
  t.teardown(() => pool.end())
  await migrate(pool)
  // Twelve rows aged 100 h down to 89 h (ids grow with time, as emit() writes them), the fourth never published,
  // then two recent published rows and a recent unpublished one.
  await pool.query(`INSERT INTO outbox (routing_key, payload, created_at, published_at)
    SELECT 'old.' || i, '{}', now() - make_interval(hours => 100 - i), CASE WHEN i = 3 THEN NULL ELSE now() END
      FROM generate_series(0, 11) i ORDER BY i`)
  await pool.query(`INSERT INTO outbox (routing_key, payload, published_at) VALUES ('new.0', '{}', now()), ('new.1', '{}', now()), ('new.2', '{}', NULL)`)
  const left = async (): Promise<string[]> => (await pool.query<{ routing_key: string }>('SELECT routing_key FROM outbox ORDER BY id')).rows.map((r) => r.routing_key)

  t.equal(await pruneOutbox(pool, 95.5 * 3600, 4), 4, 'older than 95.5 h and published: rows 0, 1, 2 and 4, across two ranges')
  t.same(await left(), ['old.3', 'old.5', 'old.6', 'old.7', 'old.8', 'old.9', 'old.10', 'old.11', 'new.0', 'new.1', 'new.2'])
  t.equal(await pruneOutbox(pool, 3600, 4), 7)
  t.same(await left(), ['old.3', 'new.0', 'new.1', 'new.2'], 'the unpublished row stays however old, recent rows stay')
  t.equal(await pruneOutbox(pool, 3600, 4), 0, 'nothing more to do')
  t.equal(await pruneOutbox(pool, 3600, 4, 1), 0)
  await pool.query('DELETE FROM outbox')
  t.equal(await pruneOutbox(pool, 3600), 0, 'an empty outbox')
})
