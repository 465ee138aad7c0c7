import t from 'tap'
import pg from 'pg'
import { build, eventually, uniq, TEST_DATABASE_URL } from '../helper.js'
import { expireHolds, HOLD_EXPIRY_LOCK } from '../../src/hold-expiry.js'
import { balances, createCardholder, holdOf, jitHold } from './webhooks-helpers.js'

t.test('a hold past its expiry is released with an event; a fresh one stays', async (t) => {
  const app = await build(t, { RUN_WORKERS: 'false' })
  const { db } = app
  const { user, card } = await createCardholder(db, 100_00)
  const old = uniq('jit')
  const fresh = uniq('jit')
  await jitHold(db, user, card, old, 30_00)
  await jitHold(db, user, card, fresh, 20_00)
  const { rows } = await db.query(`SELECT expires_at - created_at AS ttl FROM holds WHERE jit_token = $1`, [fresh])
  t.equal(rows[0].ttl.days, 7, 'HOLD_EXPIRATION_DAYS from the hold request')
  await db.query(`UPDATE holds SET expires_at = now() - interval '1 day' WHERE jit_token = $1`, [old])
  t.equal((await balances(db, user)).available, 50_00)

  // Other test files' instances run the same sweep on this database: whichever takes the lock expires it.
  await eventually(async () => {
    await expireHolds(db.pool)
    return (await holdOf(db, old))?.status === 'EXPIRED'
  })
  t.match(await holdOf(db, old), { status: 'EXPIRED', remaining: 0 })
  t.match(await holdOf(db, fresh), { status: 'PENDING', remaining: 20_00 })
  t.same(await balances(db, user), { available: 80_00, ledger: 100_00, pending: 20_00, debitsPosted: 0, creditsPosted: 100_00 })
  const events = await db.query(`SELECT payload FROM outbox WHERE routing_key = 'ledger.hold.expired' AND payload->>'hold_jit_token' = $1`, [old])
  t.equal(events.rowCount, 1, 'one ledger.hold.expired event')
  t.match(events.rows[0].payload, { user_token: user, released_minor: 30_00 })
  const spend = await db.query('SELECT amount, uses FROM spend WHERE jit_token = $1', [old])
  t.match(spend.rows[0], { amount: '0', uses: 0 }, 'the velocity use is given back')

  await expireHolds(db.pool)
  t.same(await balances(db, user), { available: 80_00, ledger: 100_00, pending: 20_00, debitsPosted: 0, creditsPosted: 100_00 }, 'a second sweep changes nothing')
})

t.test('one instance at a time: a sweep does nothing while another holds the lock', async (t) => {
  const app = await build(t, { RUN_WORKERS: 'false' })
  const other = new pg.Client({ connectionString: TEST_DATABASE_URL })
  await other.connect()
  t.teardown(() => other.end())
  // Wait for any running sweep of another test file's instance to finish, then take the lock.
  await eventually(async () => (await other.query('SELECT pg_try_advisory_lock($1) AS ok', [HOLD_EXPIRY_LOCK])).rows[0].ok)
  const { user, card } = await createCardholder(app.db, 10_00)
  const jit = uniq('jit')
  await jitHold(app.db, user, card, jit, 5_00)
  await app.db.query(`UPDATE holds SET expires_at = now() - interval '1 minute' WHERE jit_token = $1`, [jit])
  t.same(await expireHolds(app.db.pool), { ran: false, expired: 0, releasedMinor: 0n })
  t.equal((await holdOf(app.db, jit))?.status, 'PENDING')
  await other.query('SELECT pg_advisory_unlock($1)', [HOLD_EXPIRY_LOCK])
  await eventually(async () => {
    await expireHolds(app.db.pool)
    return (await holdOf(app.db, jit))?.status === 'EXPIRED'
  })
  t.pass('expired once the lock was free')
})

t.test('the workers run the sweep on their own timer', async (t) => {
  const app = await build(t, { HOLD_EXPIRY_INTERVAL_MS: '1000' })
  const { user, card } = await createCardholder(app.db, 10_00)
  const jit = uniq('jit')
  await jitHold(app.db, user, card, jit, 4_00)
  await app.db.query(`UPDATE holds SET expires_at = now() - interval '1 second' WHERE jit_token = $1`, [jit])
  await eventually(async () => (await holdOf(app.db, jit))?.status === 'EXPIRED', 10_000, 100)
  t.equal((await balances(app.db, user)).available, 10_00)
})
