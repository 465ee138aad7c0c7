import t from 'tap'
import pg from 'pg'
import { decideJit, type DecisionDeps } from '../../../src/jit/decide.js'
import { JitBatcher } from '../../../src/jit/batcher.js'
import { callJitDecide, STALE_CONTEXT, type LedgerCall } from '../../../src/jit/ledger-call.js'
import { PgContextSource, type ContextParts, type ContextSource } from '../../../src/jit/context.js'
import { jitFundingOf, type Transaction } from '../../../src/marqeta.js'
import { TEST_DATABASE_URL, eventually } from '../../helper.js'
import { cardholder, holdCount, jitRequest } from '../../jit-fixtures.js'

// A stale context inside a group commit: only that decision is refused and made again; the batch commits the rest.
const pool = new pg.Pool({ connectionString: TEST_DATABASE_URL, max: 4 })
t.teardown(() => pool.end())

t.test('a stale item in a batch gets its stale answer alone; the others of the batch commit', async (t) => {
  const holders = await Promise.all([1, 2, 3, 4].map(async () => await cardholder(pool, { fundMinor: 100_00 })))
  const fromPg = new PgContextSource(pool)
  // The third cardholder's context is cached from before its card was suspended.
  const staleParts = await fromPg.parts(holders[2].card, holders[2].user, ['card', 'user', 'userControls', 'programControls'])
  await pool.query("UPDATE cards SET state = 'SUSPENDED' WHERE token = $1", [holders[2].card])
  const context: ContextSource = {
    parts: async (card, user, wanted, opts): Promise<ContextParts> => user === holders[2].user && opts?.fresh !== true ? staleParts : await fromPg.parts(card, user, wanted)
  }

  // Any decision may be answered stale and made again with the same token (another test file creating a program-wide
  // control meanwhile): `singles` counts the calls made alone that are not such a retry.
  const tokenOf = (call: Record<string, unknown>): string => (call.echo as { token: string }).token
  const answersOf = new Map<string, number[]>()
  let singles = 0
  let calls = 0
  let releaseFirst!: () => void
  const firstHeld = new Promise<void>((resolve) => { releaseFirst = resolve })
  const single: LedgerCall = async (call, deadlineAt) => {
    if (!(answersOf.get(tokenOf(call)) ?? []).includes(STALE_CONTEXT)) singles++
    // The first decision runs alone and is held, so that the next ones queue up into one batch.
    if (calls++ === 0) await firstHeld
    return await callJitDecide(pool, call, deadlineAt)
  }
  const batcher = new JitBatcher(pool, single, { maxBatch: 10, maxInFlight: 1, maxQueue: 1000, lockTimeoutMs: 50 })
  let queued = 0
  const ledger: LedgerCall = async (call, at) => {
    queued++
    const row = await batcher.decide(call, at)
    if (row !== undefined) answersOf.set(tokenOf(call), [...(answersOf.get(tokenOf(call)) ?? []), row.status_code])
    return row
  }
  const deps: DecisionDeps = { pool, context, now: () => new Date(), partialApproval: false, holdExpirationDays: 7, stage: () => {}, ledger }
  const txns = holders.map((ch) => jitRequest({ user: ch.user, card: ch.card, amount: '1.00' }) as Transaction)
  const decide = async (txn: Transaction) => await decideJit(deps, txn, jitFundingOf(txn)!, performance.now() + 5000)

  const first = decide(txns[0])
  await eventually(async () => calls === 1)
  const batch = txns.slice(1).map(decide)
  // The other three wait in the batcher's queue behind the held one.
  await eventually(async () => queued === 4)
  releaseFirst()
  const answers = await Promise.all([first, ...batch])
  t.same(answers.map((a) => a.statusCode), [200, 200, 402, 200])
  t.equal(JSON.parse(answers[2].body).jit_funding.decline_reason, 'CARD_NOT_ACTIVE', 'decided again on the fresh context')
  t.equal(answersOf.get(jitFundingOf(txns[2])!.token)?.[0], STALE_CONTEXT, 'the stale context was refused first')
  t.equal(singles, 1, 'alone: only the first decision (and retries); the batch did not fall back to one-by-one calls')
  t.same(await Promise.all(holders.map(async (h) => await holdCount(pool, h.user))), [1, 1, 0, 1])
})
