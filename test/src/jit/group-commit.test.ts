import t from 'tap'
import pg from 'pg'
import { JitBatcher } from '../../../src/jit/batcher.js'
import { callJitDecide, type DecisionRow } from '../../../src/jit/ledger-call.js'
import { TEST_DATABASE_URL, uniq, type Teardown } from '../../helper.js'
import { account, cardholder, fund, holdCount, type Cardholder } from '../../jit-fixtures.js'

// jit_decide's group commit (DESIGN §3): sorted account locks and one program shard per batch, a hot account served
// from the balance read once, and the deadline checked inside the transaction.
const pool = new pg.Pool({ connectionString: TEST_DATABASE_URL, max: 8 })
t.teardown(() => pool.end())

/** A jit_decide item for an authorization hold, as src/jit/decide.ts builds it (no versions: the rules ran). */
function holdItem (ch: Cardholder, amountMinor: number, o: { token?: string, deadlineMs?: number } = {}): Record<string, unknown> {
  const token = o.token ?? uniq('gc')
  return {
    echo: { token, method: 'pgfs.authorization', user_token: ch.user },
    mode: 'decide',
    amount_text: (amountMinor / 100).toFixed(2),
    exponent: 2,
    currency_code: 'USD',
    card_token: ch.card,
    effect: { kind: 'hold', effect_key: `${token}:hold`, user_token: ch.user, currency_code: 'USD', amount_minor: String(amountMinor), jit_token: token, card_token: ch.card },
    request: { token: uniq('txn') },
    deadline_ms: o.deadlineMs ?? Date.now() + 10_000
  }
}

async function batch (items: Array<Record<string, unknown>>, shard: number, db: pg.Pool | pg.PoolClient = pool): Promise<Array<DecisionRow & { i: number }>> {
  const { rows } = await db.query('SELECT * FROM jit_decide($1::jsonb[], $2)', [items, shard])
  return rows
}

/** A transaction holding row locks (FOR UPDATE by `lockSql`) until the test commits it; released at teardown. */
async function lockedBy (t: Teardown, lockSql: string, values: unknown[] = []): Promise<pg.PoolClient> {
  const holder = await pool.connect()
  t.teardown(() => holder.release())
  await holder.query('BEGIN')
  await holder.query(lockSql, values)
  return holder
}

const shuffled = <T>(xs: T[]): T[] => xs.map((x) => [Math.random(), x] as const).sort((a, b) => a[0] - b[0]).map(([, x]) => x)

t.test('many concurrent batches over overlapping accounts, with webhook-style credits among them: no deadlock, every cent accounted', async (t) => {
  const holders = await Promise.all(Array.from({ length: 12 }, () => cardholder(pool, { fundMinor: 1_000_00 })))
  const errors: string[] = []
  const approvals = new Map<string, number>()
  let approved = 0
  const runBatch = async (n: number): Promise<void> => {
    // Each batch names accounts in its own random order; jit_decide sorts its locks.
    const items = shuffled(holders).slice(0, 6).map((ch) => holdItem(ch, 1_00 + n))
    try {
      const rows = await batch(items, n % 64)
      for (const row of rows) {
        if (row.status_code !== 200) continue
        approved++
        const user = (items[row.i - 1].echo as { user_token: string }).user_token
        approvals.set(user, (approvals.get(user) ?? 0) + 1_00 + n)
      }
    } catch (err) {
      errors.push(`${(err as { code?: string }).code ?? ''} ${(err as Error).message}`)
    }
  }
  const credit = async (ch: Cardholder): Promise<void> => {
    try {
      await fund(pool, ch.user, 1)
    } catch (err) {
      errors.push(`${(err as { code?: string }).code ?? ''} ${(err as Error).message}`)
    }
  }
  const work: Array<Promise<void>> = []
  for (let n = 0; n < 60; n++) {
    work.push(runBatch(n))
    if (n % 3 === 0) work.push(credit(holders[n % holders.length]))
  }
  await Promise.all(work)
  t.same(errors, [], 'no batch failed: no deadlock (40P01), no lock timeout')
  t.equal(approved, 60 * 6, 'every decision approved (funds for all)')
  for (const ch of holders) {
    t.match(await account(pool, ch.user), { debits_pending: approvals.get(ch.user) ?? 0 }, `${ch.user}: held exactly what was approved`)
  }
})

t.test('a hot account in one batch: locked once, served in arrival order from the balance it read', async (t) => {
  const ch = await cardholder(pool, { fundMinor: 6_00 })
  const items = Array.from({ length: 10 }, () => holdItem(ch, 1_00))
  const rows = await batch(items, 3)
  t.same(rows.map((r) => r.status_code), [200, 200, 200, 200, 200, 200, 402, 402, 402, 402], 'the first six in arrival order')
  t.match(await account(pool, ch.user), { debits_pending: 6_00, available: 0 })
  t.equal(await holdCount(pool, ch.user), 6)
})

t.test('an approval whose deadline has passed when its locks are held is declined inside the transaction: nothing held', async (t) => {
  const [a, b, c] = await Promise.all([cardholder(pool, { fundMinor: 10_00 }), cardholder(pool, { fundMinor: 10_00 }), cardholder(pool, { fundMinor: 10_00 })])
  // b's deadline falls inside the commit margin: too late to hold money that Marqeta may never be told about.
  const items = [holdItem(a, 1_00), holdItem(b, 1_00, { deadlineMs: Date.now() + 5 }), holdItem(c, 1_00)]
  const rows = await batch(items, 5)
  t.same(rows.map((r) => r.status_code), [200, 402, 200])
  t.match(JSON.parse(rows[1].response).jit_funding, { decline_reason: 'TRANSACTION_NOT_PERMITTED', memo: /deadline/ })
  t.match(await account(pool, b.user), { debits_pending: 0, available: 10_00 })
  t.match(await account(pool, a.user), { debits_pending: 1_00 })
  const { rows: recorded } = await pool.query('SELECT status_code, response FROM decisions WHERE jit_token = $1', [(items[1].echo as { token: string }).token])
  t.same(recorded, [{ status_code: 402, response: rows[1].response }], 'the deadline decline is the token\'s one row: a replay answers it')
})

t.test('a batch waiting on a lock past its deadline: the late commit holds nothing', async (t) => {
  const ch = await cardholder(pool, { fundMinor: 10_00 })
  const holder = await lockedBy(t, 'SELECT 1 FROM accounts WHERE user_token = $1 FOR UPDATE', [ch.user])
  const pending = batch([holdItem(ch, 1_00, { deadlineMs: Date.now() + 300 })], 7)
  await new Promise((resolve) => setTimeout(resolve, 600)) // the lock outlives the decision's deadline
  await holder.query('COMMIT')
  const [row] = await pending
  t.equal(row.status_code, 402)
  t.match(JSON.parse(row.response).jit_funding.memo, /deadline/)
  t.match(await account(pool, ch.user), { debits_pending: 0 })
})

t.test('the queue waiting for a batch is bounded: past it a decision is answered at once, as past its deadline', async (t) => {
  const ch = await cardholder(pool, { fundMinor: 100_00 })
  const holder = await lockedBy(t, 'SELECT 1 FROM accounts WHERE user_token = $1 FOR UPDATE', [ch.user])
  const b = new JitBatcher(pool, (call, at) => callJitDecide(pool, call, at), { maxBatch: 2, maxInFlight: 1, maxQueue: 3, lockTimeoutMs: 5000 })
  const deadlineAt = performance.now() + 10_000
  // One batch runs (the first decision, alone: nothing was running) and waits on the lock; three queue; the rest
  // find the queue full.
  const answers = Array.from({ length: 7 }, () => b.decide(holdItem(ch, 1_00), deadlineAt))
  const settled: Array<DecisionRow | undefined | 'pending'> = answers.map(() => 'pending')
  answers.forEach((p, i) => { void p.then((row) => { settled[i] = row }) })
  await new Promise((resolve) => setImmediate(resolve))
  t.same(settled.slice(4), [undefined, undefined, undefined], 'the three past the bound answered at once')
  t.equal(b.waiting, 3)
  await holder.query('COMMIT')
  const rows = await Promise.all(answers.slice(0, 4))
  t.same(rows.map((r) => r?.status_code), [200, 200, 200, 200], 'the queued ones decided once the lock was free')
  t.match(await account(pool, ch.user), { debits_pending: 4_00 })
})

t.test('a decision on an account a running batch holds waits for that batch and shares the next; other accounts pass', async (t) => {
  const hot = await cardholder(pool, { fundMinor: 100_00 })
  const other = await cardholder(pool, { fundMinor: 100_00 })
  const holder = await lockedBy(t, 'SELECT 1 FROM accounts WHERE user_token = $1 FOR UPDATE', [hot.user])
  const sizes: number[] = []
  const b = new JitBatcher(pool, (call, at) => callJitDecide(pool, call, at), {
    maxBatch: 10, maxInFlight: 2, maxQueue: 100, lockTimeoutMs: 5000, metrics: { batchSize: { observe: (n) => sizes.push(n) } }
  })
  const deadlineAt = performance.now() + 10_000
  // The first runs alone (nothing was running) and waits on the lock; the next three need the same account.
  const onHot = Array.from({ length: 4 }, () => b.decide(holdItem(hot, 1_00), deadlineAt))
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(b.waiting, 3, 'the three wait in the queue, not in a second batch queued on the lock')
  const elsewhere = await b.decide(holdItem(other, 2_00), deadlineAt)
  t.equal(elsewhere?.status_code, 200, 'another account is decided meanwhile, in the free slot')
  t.equal(b.waiting, 3)
  await holder.query('COMMIT')
  const rows = await Promise.all(onHot)
  t.same(rows.map((r) => r?.status_code), [200, 200, 200, 200])
  t.same(sizes, [1, 1, 3], 'the first alone, the other account alone, then the three together')
  t.match(await account(pool, hot.user), { debits_pending: 4_00 })
})

t.test('a batch whose approval\'s deadline passes while it waits for the program shard commits nothing', async (t) => {
  const ch = await cardholder(pool, { fundMinor: 10_00 })
  const holder = await lockedBy(t, "SELECT 1 FROM accounts WHERE id = program_account('USD', 11) FOR UPDATE")
  const item = holdItem(ch, 1_00, { deadlineMs: Date.now() + 300 })
  const pending = batch([item], 11).then(() => undefined, (err: { code?: string }) => err.code)
  await new Promise((resolve) => setTimeout(resolve, 600)) // the shard stays locked past the decision's deadline
  await holder.query('COMMIT')
  t.equal(await pending, '57014', 'query_canceled: the caller answers as past the deadline')
  t.match(await account(pool, ch.user), { debits_pending: 0 })
  const { rows } = await pool.query('SELECT 1 FROM decisions WHERE jit_token = $1', [(item.echo as { token: string }).token])
  t.equal(rows.length, 0, 'no decision row either')
})

t.test('a control moved from one cardholder to another while a batch decides for both: no deadlock', async (t) => {
  // Account ids in the opposite order of the user tokens, so the change's users (token order) and the batch's accounts
  // (id order) would cross if the change locked one user's accounts before the other user's row.
  const second = await cardholder(pool, { user: `zz-${uniq('b')}`.slice(0, 36), fundMinor: 10_00 })
  const first = await cardholder(pool, { user: `aa-${uniq('a')}`.slice(0, 36), fundMinor: 10_00 })
  const control = uniq('vc')
  await pool.query(`INSERT INTO velocity_controls (token, user_token, currency_code, amount_limit, velocity_window) VALUES ($1, $2, 'USD', 100000, 'DAY')`, [control, first.user])
  // A share lock on the second user's row holds the change between its two users, long enough for the batch to lock
  // both accounts' rows in id order; without the fix the change held the first user's account by then.
  const share = await pool.connect()
  t.teardown(() => share.release())
  await share.query('BEGIN')
  await share.query('SELECT 1 FROM users WHERE token = $1 FOR SHARE', [second.user])
  const changer = await pool.connect()
  t.teardown(() => changer.release())
  const change = changer.query('UPDATE velocity_controls SET user_token = $2 WHERE token = $1', [control, second.user]).then(() => 'ok', (err: { code?: string }) => err.code)
  await new Promise((resolve) => setTimeout(resolve, 200))
  const decided = batch([holdItem(first, 1_00), holdItem(second, 1_00)], 13).then((rows) => rows.map((r) => r.status_code), (err: { code?: string }) => err.code)
  await new Promise((resolve) => setTimeout(resolve, 300))
  await share.query('COMMIT')
  t.same(await decided, [200, 200])
  t.equal(await change, 'ok', 'the change went through after the batch, no deadlock')
})

t.test('a second batch starts only once the running one has taken spareAfterMs: arrivals meanwhile share one call', async (t) => {
  const stuck = await cardholder(pool, { fundMinor: 100_00 })
  const others = await Promise.all([1, 2, 3].map(async () => await cardholder(pool, { fundMinor: 100_00 })))
  const holder = await lockedBy(t, 'SELECT 1 FROM accounts WHERE user_token = $1 FOR UPDATE', [stuck.user])
  const sizes: number[] = []
  const spareAfterMs = 300
  const b = new JitBatcher(pool, (call, at) => callJitDecide(pool, call, at), {
    maxBatch: 10, maxInFlight: 2, maxQueue: 100, lockTimeoutMs: 5000, spareAfterMs, metrics: { batchSize: { observe: (n) => sizes.push(n) } }
  })
  const deadlineAt = performance.now() + 10_000
  const first = b.decide(holdItem(stuck, 1_00), deadlineAt)
  const started = performance.now()
  const rest = others.map((ch) => b.decide(holdItem(ch, 1_00), deadlineAt))
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(b.waiting, 3, 'the other accounts wait for the running batch rather than each taking the free slot')
  const rows = await Promise.all(rest)
  t.ok(performance.now() - started >= spareAfterMs, 'the spare slot opened once the stuck batch had run spareAfterMs')
  t.same(rows.map((r) => r?.status_code), [200, 200, 200], 'decided while the first batch still waits on its lock')
  t.same(sizes, [1, 3], 'the three together, in one call')
  await holder.query('COMMIT')
  t.equal((await first)?.status_code, 200)
})
