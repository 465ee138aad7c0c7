import t from 'tap'
import pg from 'pg'
import { decideJit, type DecisionDeps } from '../../../src/jit/decide.js'
import { callJitDecide, LedgerUnavailableError } from '../../../src/jit/ledger-call.js'
import { PgContextSource } from '../../../src/jit/context.js'
import { jitFundingOf, type Transaction } from '../../../src/marqeta.js'
import { TEST_DATABASE_URL, uniq } from '../../helper.js'
import { account, cardholder, jitRequest, pastSpend, velocityControl, type Cardholder } from '../../jit-fixtures.js'

// decideJit on the real ledger with a clock the test sets: velocity windows at their edges (DESIGN §6: UTC, weeks from
// Sunday 00:00, months from the 1st). Spend rows are written in the past; the decision's `now` is fixed.
const pool = new pg.Pool({ connectionString: TEST_DATABASE_URL, max: 4 })
t.teardown(() => pool.end())

function deps (now: string, p: pg.Pool = pool): DecisionDeps {
  return { pool: p, context: new PgContextSource(p), now: () => new Date(now), partialApproval: false, holdExpirationDays: 7, stage: () => {} }
}

async function decide (ch: Cardholder, now: string, amount: unknown, o: Record<string, unknown> = {}) {
  const txn = jitRequest({ user: ch.user, card: ch.card, amount, ...o }) as Transaction
  // As the route's schema would: a JSON number arrives as its decimal text.
  const jit = jitFundingOf(txn)!
  jit.amount = String(jit.amount)
  const answer = await decideJit(deps(now), txn, jit, performance.now() + 5000)
  return { ...answer, json: JSON.parse(answer.body).jit_funding }
}

t.test('WEEK: Saturday 23:59:59 UTC is last week, Sunday 00:00 UTC is this week', async (t) => {
  const setup = async () => {
    const ch = await cardholder(pool, { fundMinor: 100_000 })
    await velocityControl(pool, { user: ch.user, window: 'WEEK', amountLimitMinor: 10_000, usageLimit: 2 })
    await pastSpend(pool, { user: ch.user, card: ch.card, amountMinor: 9000, createdAt: new Date('2026-11-21T23:59:59.999Z') })
    return ch
  }
  let ch = await setup()
  let answer = await decide(ch, '2026-11-21T23:59:59.999Z', '20.00')
  t.equal(answer.statusCode, 402, 'on Saturday night the 90.00 spent counts')
  t.equal(answer.json.decline_reason, 'AMOUNT_LIMIT_EXCEEDED')
  answer = await decide(ch, '2026-11-21T23:59:59.999Z', '10.00')
  t.equal(answer.statusCode, 200, 'up to the limit')

  ch = await setup()
  answer = await decide(ch, '2026-11-22T00:00:00.000Z', '20.00')
  t.equal(answer.statusCode, 200, 'at Sunday 00:00 a new week starts')
  t.match(await account(pool, ch.user), { debits_pending: 2000 })

  ch = await setup()
  await pastSpend(pool, { user: ch.user, card: ch.card, amountMinor: 1, createdAt: new Date('2026-11-16T08:00:00Z') })
  answer = await decide(ch, '2026-11-21T23:00:00Z', '0.01')
  t.equal(answer.json.decline_reason, 'TRANSACTION_COUNT_LIMIT_EXCEEDED', 'two uses this week already')
  answer = await decide(ch, '2026-11-22T00:00:00Z', '0.01')
  t.equal(answer.statusCode, 200)
})

t.test('MONTH: the last millisecond of a month and the first of the next', async (t) => {
  const setup = async () => {
    const ch = await cardholder(pool, { fundMinor: 100_000 })
    await velocityControl(pool, { user: ch.user, window: 'MONTH', usageLimit: 1 })
    await pastSpend(pool, { user: ch.user, card: ch.card, amountMinor: 100, createdAt: new Date('2026-10-31T23:59:59.999Z') })
    return ch
  }
  let ch = await setup()
  t.equal((await decide(ch, '2026-10-31T23:59:59.999Z', 1)).json.decline_reason, 'TRANSACTION_COUNT_LIMIT_EXCEEDED')
  ch = await setup()
  t.equal((await decide(ch, '2026-11-01T00:00:00.000Z', 1)).statusCode, 200)
})

t.test('DAY: 23:59:59 and 00:00 UTC', async (t) => {
  const setup = async () => {
    const ch = await cardholder(pool, { fundMinor: 100_000 })
    await velocityControl(pool, { user: ch.user, window: 'DAY', amountLimitMinor: 5000 })
    await pastSpend(pool, { user: ch.user, card: ch.card, amountMinor: 5000, createdAt: new Date('2026-11-19T23:59:59Z') })
    return ch
  }
  let ch = await setup()
  t.equal((await decide(ch, '2026-11-19T23:59:59Z', '0.01')).json.decline_reason, 'AMOUNT_LIMIT_EXCEEDED')
  ch = await setup()
  t.equal((await decide(ch, '2026-11-20T00:00:00Z', '50.00')).statusCode, 200)
})

t.test('LIFETIME counts from the control\'s creation; spending in scope of another MCC does not count', async (t) => {
  const ch = await cardholder(pool, { fundMinor: 100_000 })
  await velocityControl(pool, { user: ch.user, window: 'LIFETIME', amountLimitMinor: 1000, mcc: '5411', createdTime: new Date('2026-06-01T00:00:00Z') })
  await pastSpend(pool, { user: ch.user, card: ch.card, amountMinor: 50_000, createdAt: new Date('2026-05-31T23:59:59Z') })
  await pastSpend(pool, { user: ch.user, card: ch.card, amountMinor: 50_000, createdAt: new Date('2026-07-01T00:00:00Z'), mcc: '5812' })
  await pastSpend(pool, { user: ch.user, card: ch.card, amountMinor: 900, createdAt: new Date('2026-06-01T00:00:00Z') })
  t.equal((await decide(ch, '2026-11-20T12:00:00Z', '1.00')).statusCode, 200)
  t.equal((await decide(ch, '2026-11-20T12:00:00Z', '0.01')).json.decline_reason, 'AMOUNT_LIMIT_EXCEEDED')
})

t.test('a program-wide velocity control limits each user on their own', async (t) => {
  const mcc = `9${Math.floor(Math.random() * 1e6)}`
  const token = await velocityControl(pool, { window: 'DAY', usageLimit: 1, mcc })
  t.teardown(() => pool.query('DELETE FROM velocity_controls WHERE token = $1', [token]))
  const a = await cardholder(pool, { fundMinor: 10_000 })
  const b = await cardholder(pool, { fundMinor: 10_000 })
  t.equal((await decide(a, new Date().toISOString(), 1, { mcc })).statusCode, 200)
  t.equal((await decide(a, new Date().toISOString(), 1, { mcc })).json.decline_reason, 'TRANSACTION_COUNT_LIMIT_EXCEEDED')
  t.equal((await decide(b, new Date().toISOString(), 1, { mcc })).statusCode, 200, 'another user\'s use does not count')
})

t.test('PostgreSQL unreachable: LedgerUnavailableError with statusCode 503, at once', async (t) => {
  const dead = new pg.Pool({ connectionString: 'postgres://postgres@127.0.0.1:1/test', connectionTimeoutMillis: 2000 })
  t.teardown(() => dead.end())
  const txn = jitRequest({ user: uniq('u'), card: uniq('c'), amount: '1.00' }) as Transaction
  const started = performance.now()
  // The context comes from PostgreSQL too (no cache in front here).
  const err = await decideJit(deps('2026-11-20T12:00:00Z', dead), txn, jitFundingOf(txn)!, performance.now() + 1500).then(() => undefined, (e: unknown) => e)
  t.ok(err instanceof LedgerUnavailableError, String(err))
  t.equal((err as LedgerUnavailableError).statusCode, 503)
  // With the context served from elsewhere (a cache), the ledger call itself fails the same way.
  const cached = { ...deps('2026-11-20T12:00:00Z', dead), context: { parts: async () => ({ card: { token: txn.card_token!, user_token: txn.user_token!, state: 'ACTIVE' }, user: { token: txn.user_token!, status: 'ACTIVE' } }) } }
  await t.rejects(decideJit(cached, txn, jitFundingOf(txn)!, performance.now() + 1500), LedgerUnavailableError)
  t.ok(performance.now() - started < 1000, 'no waiting for the deadline')
})

t.test('a saturated pool (its own wait runs out before the deadline) is a deadline decline, not a 503', async (t) => {
  const small = new pg.Pool({ connectionString: TEST_DATABASE_URL, max: 1, connectionTimeoutMillis: 100 })
  t.teardown(() => small.end())
  const ch = await cardholder(pool, { fundMinor: 10_000 })
  const busy = await small.connect()
  t.teardown(() => busy.release())
  for (const context of ['postgres', 'cache'] as const) {
    const txn = jitRequest({ user: ch.user, card: ch.card, amount: '1.00' }) as Transaction
    const d = deps(new Date().toISOString(), small)
    if (context === 'cache') d.context = new PgContextSource(pool)
    const started = performance.now()
    const answer = await decideJit(d, txn, jitFundingOf(txn)!, performance.now() + 1000)
    t.equal(answer.statusCode, 402, `context from ${context}`)
    t.match(JSON.parse(answer.body).jit_funding, { decline_reason: 'TRANSACTION_NOT_PERMITTED', memo: /deadline/ })
    t.ok(performance.now() - started < 900, 'answered when the pool gave up')
  }
  t.match(await account(pool, ch.user), { debits_pending: 0, available: 10_000 })
})

t.test('a decision on a stale context is refused by the ledger, made again on a fresh one, and nothing stale is written', async (t) => {
  const ch = await cardholder(pool, { fundMinor: 10_000 })
  const fromPg = new PgContextSource(pool)
  // A cache that kept the card ACTIVE (with its version then) after the card was suspended.
  const before = await fromPg.parts(ch.card, ch.user, ['card', 'user', 'userControls', 'programControls'])
  await pool.query("UPDATE cards SET state = 'SUSPENDED' WHERE token = $1", [ch.card])
  const fresh: boolean[] = []
  const cached = { parts: async (...args: Parameters<PgContextSource['parts']>) => { fresh.push(args[3]?.fresh === true); return args[3]?.fresh === true ? await fromPg.parts(...args) : before } }
  const calls: Array<Record<string, unknown>> = []
  const d: DecisionDeps = { ...deps(new Date().toISOString()), context: cached, ledger: async (call, at) => { calls.push(call); return await callJitDecide(pool, call, at) } }
  const txn = jitRequest({ user: ch.user, card: ch.card, amount: '1.00' }) as Transaction
  const answer = await decideJit(d, txn, jitFundingOf(txn)!, performance.now() + 5000)
  t.equal(answer.statusCode, 402)
  t.equal(JSON.parse(answer.body).jit_funding.decline_reason, 'CARD_NOT_ACTIVE')
  t.same(fresh, [false, true], 'the second context came straight from PostgreSQL')
  t.equal(calls.length, 2)
  t.equal(calls[0].decline_reason, undefined, 'the stale context would have approved')
  const { rows } = await pool.query('SELECT count(*)::int AS n FROM hold_states WHERE user_token = $1', [ch.user])
  t.equal(rows[0].n, 0, 'no hold')

  // The reverse: a stale SUSPENDED decline does not stand either.
  const suspended = await fromPg.parts(ch.card, ch.user, ['card', 'user', 'userControls', 'programControls'])
  await pool.query("UPDATE cards SET state = 'ACTIVE' WHERE token = $1", [ch.card])
  const again: DecisionDeps = { ...d, context: { parts: async (...args: Parameters<PgContextSource['parts']>) => args[3]?.fresh === true ? await fromPg.parts(...args) : suspended } }
  const txn2 = jitRequest({ user: ch.user, card: ch.card, amount: '1.00' }) as Transaction
  t.equal((await decideJit(again, txn2, jitFundingOf(txn2)!, performance.now() + 5000)).statusCode, 200)
})

t.test('a context that stays stale ends in a decline that holds nothing, after a bounded number of tries', async (t) => {
  const ch = await cardholder(pool, { fundMinor: 10_000 })
  const fromPg = new PgContextSource(pool)
  const parts = await fromPg.parts(ch.card, ch.user, ['card', 'user', 'userControls', 'programControls'])
  parts.versions!.user = { scope: ch.user, version: -5 }
  let loads = 0
  const d: DecisionDeps = { ...deps(new Date().toISOString()), context: { parts: async () => { loads++; return parts } } }
  const txn = jitRequest({ user: ch.user, card: ch.card, amount: '1.00' }) as Transaction
  const answer = await decideJit(d, txn, jitFundingOf(txn)!, performance.now() + 5000)
  t.equal(answer.statusCode, 402)
  t.match(JSON.parse(answer.body).jit_funding, { decline_reason: 'TRANSACTION_NOT_PERMITTED', memo: /context changed/ })
  t.equal(loads, 3)
})
