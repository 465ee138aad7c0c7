import t from 'tap'
import pg from 'pg'
import { decideJit, type DecisionDeps } from '../../../src/jit/decide.js'
import { JitBatcher } from '../../../src/jit/batcher.js'
import { callJitDecide, STALE_CONTEXT, type LedgerCall } from '../../../src/jit/ledger-call.js'
import { PgContextSource } from '../../../src/jit/context.js'
import { jitFundingOf, type Transaction } from '../../../src/marqeta.js'
import { TEST_DATABASE_URL, eventually, uniq } from '../../helper.js'
import { account, cardholder, holdCount, jitRequest, type Cardholder } from '../../jit-fixtures.js'

// Group commit on the real ledger: batched decisions must answer exactly as decisions made one by one would.
const pool = new pg.Pool({ connectionString: TEST_DATABASE_URL, max: 6 })
t.teardown(() => pool.end())

/**
 * A batcher whose one-by-one path is the real jit_decide call, counted: `singles` are the decisions sent alone, not
 * counting the retry of a decision answered stale (another test file creating a program-wide control meanwhile makes
 * any decision stale, and it is decided again with the same token).
 */
function batcher (o: { maxBatch?: number, maxInFlight?: number } = {}): { batcher: { decide: LedgerCall }, singles: () => number } {
  let singles = 0
  const staleTokens = new Set<string>()
  const tokenOf = (call: Record<string, unknown>): string => (call.echo as { token: string }).token
  const single: LedgerCall = async (call, deadlineAt) => {
    if (!staleTokens.has(tokenOf(call))) singles++
    return await callJitDecide(pool, call, deadlineAt)
  }
  const b = new JitBatcher(pool, single, { maxBatch: o.maxBatch ?? 10, maxInFlight: o.maxInFlight ?? 1, maxQueue: 1000, lockTimeoutMs: 50 })
  const decide: LedgerCall = async (call, deadlineAt) => {
    const row = await b.decide(call, deadlineAt)
    if (row?.status_code === STALE_CONTEXT) staleTokens.add(tokenOf(call))
    return row
  }
  return { batcher: { decide }, singles: () => singles }
}

async function decide (ledger: LedgerCall, ch: Cardholder, amount: string, o: { token?: string, deadlineMs?: number } = {}) {
  const txn = jitRequest({ user: ch.user, card: ch.card, amount, ...(o.token !== undefined ? { token: o.token } : {}) }) as Transaction
  const deps: DecisionDeps = { pool, context: new PgContextSource(pool), now: () => new Date(), partialApproval: false, holdExpirationDays: 7, stage: () => {}, ledger }
  const answer = await decideJit(deps, txn, jitFundingOf(txn)!, performance.now() + (o.deadlineMs ?? 5000))
  return { ...answer, json: JSON.parse(answer.body).jit_funding }
}

t.test('40 concurrent authorizations on one account, funds for 25: batched, exactly 25 approved, never overdrawn', async (t) => {
  const ch = await cardholder(pool, { fundMinor: 25_00 })
  const { batcher: b, singles } = batcher()
  const answers = await Promise.all(Array.from({ length: 40 }, () => decide(b.decide, ch, '1.00')))
  t.equal(answers.filter((a) => a.statusCode === 200).length, 25)
  t.equal(answers.filter((a) => a.json.decline_reason === 'INSUFFICIENT_FUNDS').length, 15)
  t.match(await account(pool, ch.user), { debits_pending: 25_00, available: 0 })
  t.equal(await holdCount(pool, ch.user), 25)
  t.ok(singles() < 40, `the batches carried most decisions (${40 - singles()} of 40)`)
})

t.test('duplicates inside one batch and across batches: one effect, the same bytes', async (t) => {
  const ch = await cardholder(pool, { fundMinor: 100_00 })
  const { batcher: b } = batcher({ maxInFlight: 2, maxBatch: 5 })
  const token = uniq('dup')
  const answers = await Promise.all(Array.from({ length: 12 }, () => decide(b.decide, ch, '7.00', { token })))
  t.equal(new Set(answers.map((a) => a.body)).size, 1, 'every copy answered byte for byte the same')
  t.equal(answers.filter((a) => !a.replay).length, 1, 'one decision, eleven replays')
  t.equal(answers[0].statusCode, 200)
  t.match(await account(pool, ch.user), { debits_pending: 7_00 })
  t.equal(await holdCount(pool, ch.user), 1)
})

t.test('an account locked past the batch lock timeout: the batch falls back to one by one, the others are unaffected', async (t) => {
  const [blocker, locked] = await Promise.all([cardholder(pool, { fundMinor: 100_00 }), cardholder(pool, { fundMinor: 100_00 })])
  const others = await Promise.all(Array.from({ length: 4 }, () => cardholder(pool, { fundMinor: 100_00 })))
  const { batcher: b, singles } = batcher({ maxInFlight: 1 })
  const holder = await pool.connect()
  t.teardown(() => holder.release())
  await holder.query('BEGIN')
  await holder.query('SELECT 1 FROM accounts WHERE user_token = ANY($1) FOR UPDATE', [[blocker.user, locked.user]])
  // The blocker finds nothing running and goes alone, waiting on its lock until its deadline; meanwhile the next five
  // queue behind it and then form one batch, which meets the other lock.
  const first = decide(b.decide, blocker, '1.00', { deadlineMs: 1500 })
  await eventually(async () => singles() === 1)
  const answers = await Promise.all([first, decide(b.decide, locked, '1.00', { deadlineMs: 3000 }), ...others.map((ch) => decide(b.decide, ch, '2.00'))])
  await holder.query('ROLLBACK')
  t.equal(singles(), 1 + 5, 'the blocker alone, then all five of the failed batch one by one')
  for (const [i, who] of ['blocker', 'locked'].entries()) {
    t.match(answers[i].json, { decline_reason: 'TRANSACTION_NOT_PERMITTED', memo: /deadline/ }, `${who}: deadline decline`)
  }
  t.same(answers.slice(2).map((a) => a.statusCode), [200, 200, 200, 200], 'the others approved on their own')
  for (const ch of [blocker, locked]) t.match(await account(pool, ch.user), { debits_pending: 0, available: 100_00 }, 'nothing held')
  for (const ch of others) t.match(await account(pool, ch.user), { debits_pending: 2_00 })
})

t.test('maxBatch 1: every decision alone', async (t) => {
  const ch = await cardholder(pool, { fundMinor: 10_00 })
  const { batcher: b, singles } = batcher({ maxBatch: 1, maxInFlight: 2 })
  const answers = await Promise.all(Array.from({ length: 6 }, () => decide(b.decide, ch, '2.00')))
  t.equal(answers.filter((a) => a.statusCode === 200).length, 5)
  t.equal(singles(), 6)
})
