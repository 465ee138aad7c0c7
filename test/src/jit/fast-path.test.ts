import t from 'tap'
import pg from 'pg'
import fc from 'fast-check'
import { randomBytes } from 'node:crypto'
import { decideJit, type DecisionDeps } from '../../../src/jit/decide.js'
import type { DecisionRow, LedgerCall } from '../../../src/jit/batcher.js'
import type { ContextSource } from '../../../src/jit/context.js'
import { jitFundingOf, type Transaction } from '../../../src/marqeta.js'
import { TEST_DATABASE_URL } from '../../helper.js'
import { cardholder, jitRequest } from '../../jit-fixtures.js'

// jit_decide decides a plain authorization hold itself (migration 012) and hands everything else to ledger_apply.
// Twin cardholders get the same operations: twin A's holds take the fast path, twin B's a velocity window that can
// never bind, which sends every one of its decisions through ledger_apply. Answers, rows and events must be the same.
const pool = new pg.Pool({ connectionString: TEST_DATABASE_URL, max: 4 })
t.teardown(() => pool.end())

const seed = process.env.FC_SEED !== undefined ? Number(process.env.FC_SEED) : Math.floor(Math.random() * 2 ** 31)
const numRuns = Number(process.env.FC_RUNS ?? 12)

type Op =
  | { op: 'authorize', amountMinor: number, partialCapable: boolean, superseded: boolean }
  | { op: 'replay', of: number }
  | { op: 'card', state: 'ACTIVE' | 'SUSPENDED' | 'TERMINATED' }
  | { op: 'user', status: 'ACTIVE' | 'SUSPENDED' }

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ op: fc.constant('authorize' as const), amountMinor: fc.integer({ min: 1, max: 4000 }), partialCapable: fc.boolean(), superseded: fc.integer({ min: 0, max: 5 }).map((n) => n === 0) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('replay' as const), of: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('card' as const), state: fc.constantFrom('ACTIVE' as const, 'SUSPENDED' as const, 'TERMINATED' as const) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('user' as const), status: fc.constantFrom('ACTIVE' as const, 'SUSPENDED' as const) }) }
)

interface Twin { prefix: string, user: string, card: string, velocity: boolean }

/** A context that always says ACTIVE (so the ledger's own state check decides), with B's non-binding window. */
function contextOf (twin: Twin): ContextSource {
  return {
    parts: async (cardToken, userToken) => ({
      card: cardToken === undefined ? null : { token: cardToken, user_token: userToken, state: 'ACTIVE' },
      user: { token: userToken, status: 'ACTIVE' },
      userControls: {
        auth: [],
        velocity: twin.velocity
          ? [{ token: `${twin.prefix}vc`, user_token: userToken, card_token: null, currency_code: 'USD', amount_limit: '1000000000000', usage_limit: null, velocity_window: 'LIFETIME', mcc: null, mid: null, created_time: '2026-01-01T00:00:00Z' }]
          : []
      },
      programControls: { auth: [], velocity: [] }
    })
  }
}

/** jit_decide in its own transaction, counting the ledger_apply calls it made (which path it took). */
function countingLedger (calls: number[]): LedgerCall {
  return async (call) => {
    const client = await pool.connect()
    try {
      // The backend's pending counts are not reset per transaction: the difference is this call's.
      const count = async (): Promise<number> => (await client.query<{ n: number }>(
        "SELECT coalesce(sum(calls), 0)::int AS n FROM pg_stat_xact_user_functions WHERE funcname = 'ledger_apply'")).rows[0].n
      await client.query("BEGIN; SET LOCAL track_functions = 'pl'")
      const before = await count()
      const { rows: [row] } = await client.query<DecisionRow>('SELECT * FROM jit_decide($1::jsonb)', [call])
      const after = await count()
      await client.query('COMMIT')
      calls.push(after - before)
      return row
    } catch (err) {
      await client.query('ROLLBACK')
      throw err
    } finally {
      client.release()
    }
  }
}

/** Everything a decision can write for one twin, in order, with that twin's prefix made generic. */
async function stateOf (twin: Twin): Promise<string> {
  const like = `${twin.prefix}%`
  const q = async (sql: string, params: unknown[]): Promise<unknown[]> => (await pool.query(sql, params)).rows
  const state = {
    account: await q('SELECT credits_posted, debits_posted, credits_pending, debits_pending FROM accounts WHERE user_token = $1', [twin.user]),
    holds: await q(`SELECT jit_token, user_token, card_token, amount, remaining, posted, status, forced, expires_at - created_at AS days,
                           (SELECT array_agg(t.jit_token ORDER BY t.jit_token) FROM hold_tokens t WHERE t.hold_id = h.id) AS tokens
                      FROM holds h WHERE user_token = $1 ORDER BY id`, [twin.user]),
    entries: await q(`SELECT e.amount, e.phase, e.kind, e.jit_token, e.transaction_token, e.effect_key, e.hold_id IS NOT NULL AS held,
                             c.user_token AS credit_user, c.shard = abs(hashtext($1)) % 64 AS users_shard
                        FROM entries e JOIN accounts d ON d.id = e.debit_account_id JOIN accounts c ON c.id = e.credit_account_id
                       WHERE d.user_token = $1 AND e.jit_token LIKE $2 ORDER BY e.id`, [twin.user, like]),
    spend: await q('SELECT jit_token, user_token, card_token, currency_code, mcc, mid, amount, uses FROM spend WHERE user_token = $1 ORDER BY jit_token', [twin.user]),
    effects: await q('SELECT effect_key, result - \'account_id\' AS result FROM effects WHERE effect_key LIKE $1 ORDER BY effect_key', [like]),
    decisions: await q('SELECT jit_token, method, user_token, card_token, result, decline_reason, status_code, response, amount_minor FROM decisions WHERE user_token = $1 ORDER BY jit_token', [twin.user]),
    events: await q('SELECT routing_key, payload FROM outbox WHERE payload->>\'jit_token\' LIKE $1 ORDER BY id', [like])
  }
  return JSON.stringify(state).replaceAll(twin.prefix, 'TWIN-')
}

t.test('the fast path writes what ledger_apply writes, answer for answer and row for row', async (t) => {
  t.comment(`fast-check seed ${seed} (rerun with FC_SEED=${seed}), ${numRuns} runs`)
  let fastDecisions = 0
  let generalDecisions = 0
  const property = fc.asyncProperty(
    fc.option(fc.integer({ min: 0, max: 20_000 }), { nil: undefined }),
    fc.array(opArb, { minLength: 5, maxLength: 30 }),
    async (fundMinor, ops) => {
      const run = randomBytes(4).toString('hex')
      const twins: Twin[] = []
      for (const [name, velocity] of [['a', false], ['b', true]] as const) {
        const prefix = `fp${name}${run}-`
        const ch = await cardholder(pool, { user: `${prefix}u`, card: `${prefix}c`, fundMinor })
        twins.push({ prefix, ...ch, velocity })
      }
      const calls: number[][] = [[], []]
      const sent: number[] = []
      for (const [i, op] of ops.entries()) {
        const answers: string[] = []
        for (const [k, twin] of twins.entries()) {
          if (op.op === 'card') {
            await pool.query('UPDATE cards SET state = $2 WHERE token = $1', [twin.card, op.state])
            continue
          }
          if (op.op === 'user') {
            await pool.query('UPDATE users SET status = $2 WHERE token = $1', [twin.user, op.status])
            continue
          }
          const n = op.op === 'replay' ? (sent.length === 0 ? i : sent[op.of % sent.length]) : i
          const token = `${twin.prefix}j${n}`
          if (op.op === 'authorize' && op.superseded) {
            // A timeout's void got here first (DESIGN §5): the hold it supersedes must not happen on either path.
            await pool.query(`INSERT INTO effects (effect_key, result) VALUES ($1, '{"status": "superseded", "approved_minor": 0}')`, [`${token}:hold`])
          }
          const amountMinor = op.op === 'authorize' ? op.amountMinor : 100
          const txn = jitRequest({ user: twin.user, card: twin.card, token, amount: (amountMinor / 100).toFixed(2), partialCapable: op.op === 'authorize' && op.partialCapable }) as Transaction
          txn.token = `${twin.prefix}t${n}`
          const deps: DecisionDeps = {
            pool, context: contextOf(twin), now: () => new Date(), partialApproval: true, holdExpirationDays: 7, stage: () => {}, ledger: countingLedger(calls[k])
          }
          const answer = await decideJit(deps, txn, jitFundingOf(txn)!, performance.now() + 10_000)
          answers.push(JSON.stringify([answer.statusCode, answer.replay, answer.body]).replaceAll(twin.prefix, 'TWIN-'))
          const applied = calls[k].at(-1)
          if (!answer.replay && twin.velocity && applied !== 1) throw new Error(`step ${i}: twin B's decision called ledger_apply ${applied} times`)
          if (!answer.replay && !twin.velocity && applied === 0) fastDecisions++
          if (!answer.replay && twin.velocity) generalDecisions++
        }
        if (op.op === 'authorize') sent.push(i)
        if (answers.length === 2 && answers[0] !== answers[1]) throw new Error(`step ${i} ${JSON.stringify(op)}: ${answers[0]} vs ${answers[1]}`)
      }
      const [a, b] = [await stateOf(twins[0]), await stateOf(twins[1])]
      if (a !== b) throw new Error(`rows differ:\nfast    ${a}\ngeneral ${b}`)
    })
  // A fixed number of runs; the budget only bounds a failing run's shrinking, and a run it cuts short fails.
  const result = await fc.check(property, { seed, numRuns, interruptAfterTimeLimit: 60_000, markInterruptAsFailure: true })
  t.notOk(result.failed, result.failed ? `${fc.defaultReportMessage(result) ?? 'failed'}\n${String(result.errorInstance)}` : `seed ${seed}: ${result.numRuns} runs passed`)
  t.equal(result.interrupted ? -1 : result.numRuns, numRuns, `all ${numRuns} runs ran (seed ${seed})`)
  t.ok(fastDecisions > 0, `twin A decided ${fastDecisions} holds without ledger_apply (twin B: ${generalDecisions} through it)`)
})
