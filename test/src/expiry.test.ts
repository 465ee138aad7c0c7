import t from 'tap'
import pg from 'pg'
import { build, eventually, uniq, TEST_DATABASE_URL } from '../helper.js'
import { expireHolds, HOLD_EXPIRY_LOCK } from '../../src/hold-expiry.js'
import { balances, createCardholder, holdOf, jitHold, ledger } from './webhooks-helpers.js'
import { ageHold, decideHold } from './ledger/helper.js'

t.test('a hold past its expiry is released with an event; a fresh one stays', async (t) => {
  const app = await build(t, { ROLE: 'api' })
  const { db } = app
  const { user, card } = await createCardholder(db, 100_00)
  const old = uniq('jit')
  const fresh = uniq('jit')
  // Under a velocity control, so that the hold has a usage row (written only when a control applies) to give back.
  const held = await ledger(db, {
    kind: 'hold', effect_key: `${old}:hold`, user_token: user, currency_code: 'USD', amount_minor: 30_00, jit_token: old, card_token: card,
    hold_expiration_days: 7, velocity: [{ usage_limit: 100, since: '2000-01-01T00:00:00Z', user_token: user }]
  })
  t.equal(held.status, 'applied')
  t.match((await db.query('SELECT amount, uses FROM spend WHERE jit_token = $1', [old])).rows[0], { amount: '3000', uses: 1 })
  await jitHold(db, user, card, fresh, 20_00)
  const { rows } = await db.query(`SELECT expires_at - created_at AS ttl FROM holds WHERE jit_token = $1`, [fresh])
  t.equal(rows[0].ttl.days, 7, 'HOLD_EXPIRATION_DAYS from the hold request')
  await ageHold(db, old, '1 day')
  t.equal((await balances(db, user)).available, 50_00)

  // Other test files' instances run the same sweep on this database: whichever takes the lock expires it.
  await eventually(async () => {
    await expireHolds(db.pool)
    return (await holdOf(db, old))?.status === 'EXPIRED'
  })
  t.match(await holdOf(db, old), { status: 'EXPIRED', remaining: 0 })
  t.match(await holdOf(db, fresh), { status: 'PENDING', remaining: 20_00 })
  t.same(await balances(db, user), { available: 80_00, ledger: 100_00, pending: 20_00, debitsPosted: 0, creditsPosted: 100_00 })
  // The relay publishes ledger.hold.expired from this transfer row (DESIGN §7).
  const expired = await db.query(`SELECT kind, user_token, released FROM transfers WHERE code = 'hold.expired' AND hold_jit_token = $1`, [old])
  t.equal(expired.rowCount, 1, 'one hold.expired transfer')
  t.match(expired.rows[0], { kind: 'void', user_token: user, released: '3000' })
  const spend = await db.query('SELECT amount, uses FROM spend WHERE jit_token = $1', [old])
  t.match(spend.rows[0], { amount: '0', uses: 0 }, 'the velocity use is given back')

  await expireHolds(db.pool)
  t.same(await balances(db, user), { available: 80_00, ledger: 100_00, pending: 20_00, debitsPosted: 0, creditsPosted: 100_00 }, 'a second sweep changes nothing')
})

t.test('one instance at a time: a sweep does nothing while another holds the lock', async (t) => {
  const app = await build(t, { ROLE: 'api' })
  const other = new pg.Client({ connectionString: TEST_DATABASE_URL })
  await other.connect()
  t.teardown(() => other.end())
  // Wait for any running sweep of another test file's instance to finish, then take the lock.
  await eventually(async () => (await other.query('SELECT pg_try_advisory_lock($1) AS ok', [HOLD_EXPIRY_LOCK])).rows[0].ok)
  const { user, card } = await createCardholder(app.db, 10_00)
  const jit = uniq('jit')
  await jitHold(app.db, user, card, jit, 5_00)
  await ageHold(app.db, jit, '1 minute')
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
  await ageHold(app.db, jit)
  await eventually(async () => (await holdOf(app.db, jit))?.status === 'EXPIRED', 10_000, 100)
  t.equal((await balances(app.db, user)).available, 10_00)
})

t.test('a hold that is still only its JIT decision row expires too', async (t) => {
  const app = await build(t, { ROLE: 'api' })
  const { db } = app
  const { user, card } = await createCardholder(db, 10_00)
  const jit = uniq('jit')
  // Decisions are immutable, so the hold is decided already expired (a negative lifetime) instead of aged afterwards.
  t.equal((await decideHold(db, { user, card, jit, amountMinor: 6_00n, expirationDays: -1 })).status_code, 200)
  t.equal((await db.query('SELECT 1 FROM holds WHERE jit_token = $1', [jit])).rowCount, 0, 'no holds row: the decision is the hold')
  t.equal((await balances(db, user)).available, 4_00)
  await eventually(async () => {
    await expireHolds(db.pool)
    return (await holdOf(db, jit))?.status === 'EXPIRED'
  })
  t.match(await holdOf(db, jit), { status: 'EXPIRED', amount: 6_00, remaining: 0 })
  t.same(await balances(db, user), { available: 10_00, ledger: 10_00, pending: 0, debitsPosted: 0, creditsPosted: 10_00 })
})
