import t from 'tap'
import fc from 'fast-check'
import type pg from 'pg'
import { uniq } from '../../helper.js'
import { applyLedger, expireHold, type LedgerEffect } from '../../../src/ledger/apply.js'
import { load, unload, type FundsMove } from '../../../src/ledger/funds.js'
import { auditLedger } from '../../../src/audit.js'
import { ageHold, decideHold, newCardholder, testPool } from './helper.js'

type DecidedHold = Parameters<typeof decideHold>[1]

/*
 * Model-based test: random sequences of ledger operations run against PostgreSQL and against a plain in-memory model
 * of one cardholder's USD account; balances and every hold are compared after each step, the audit runs after each
 * sequence. Holds are placed both ways the ledger places them: by a webhook (ledger_apply, a pending transfer) and by
 * a JIT decision (jit_decide, the decision row), and then go through the same reversals, clearings, voids and expiry.
 * Seed: FC_SEED, else random; printed either way.
 */

type Op =
  | { op: 'load' | 'unload' | 'hold' | 'debit' | 'credit' | 'forced_debit', amount: number }
  | { op: 'jit_hold', amount: number }
  | { op: 'incremental' | 'jit_incremental' | 'release' | 'settle', target: number, amount: number }
  | { op: 'void' | 'void_debit' | 'expire' | 'replay', target: number }

const amount = fc.integer({ min: 1, max: 3_000 })
const target = fc.nat({ max: 1_000 })
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ op: fc.constant('load' as const), amount: fc.integer({ min: 1, max: 10_000 }) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('unload' as const), amount }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('hold' as const), amount }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('incremental' as const), target, amount }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('jit_hold' as const), amount }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('jit_incremental' as const), target, amount }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('release' as const), target, amount }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('settle' as const), target, amount }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('void' as const), target }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('debit' as const), amount }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('void_debit' as const), target }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('credit' as const), amount }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('forced_debit' as const), amount }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('expire' as const), target }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('replay' as const), target }) }
)

interface ModelHold { token: string, remaining: bigint, status: 'PENDING' | 'POSTED' | 'VOIDED' | 'EXPIRED' }

type Call = { fn: 'apply', effect: LedgerEffect } | { fn: 'load' | 'unload', move: FundsMove } | { fn: 'decide', hold: DecidedHold }

/** What the ledger should do, in the simplest terms. */
class Model {
  ledger = 0n
  holds: ModelHold[] = []
  holdIndex = new Map<string, number>() // every token of a hold (original and incrementals)
  tokens: string[] = []
  debits = new Map<string, bigint>() // approved immediate debits
  increments = new Map<string, bigint>() // what each approved incremental added to its hold
  debitTokens: string[] = []
  keys = new Set<string>() // effect keys already applied
  applied: Call[] = []

  get pending (): bigint { return this.holds.reduce((sum, h) => sum + (h.status === 'PENDING' ? h.remaining : 0n), 0n) }
  get available (): bigint { return this.ledger - this.pending }
  pendingHold (token: string): ModelHold | undefined {
    const i = this.holdIndex.get(token)
    return i === undefined || this.holds[i].status !== 'PENDING' ? undefined : this.holds[i]
  }

  release (h: ModelHold, amountMinor: bigint | undefined, status: ModelHold['status']): void {
    h.remaining -= amountMinor === undefined || amountMinor > h.remaining ? h.remaining : amountMinor
    if (h.remaining === 0n) h.status = status
  }
}

async function observe (db: pg.Pool, user: string): Promise<{ available: bigint, ledger: bigint, holds: Array<{ token: string, remaining: bigint, status: string }> }> {
  const { rows: [r] } = await db.query(
    `SELECT (SELECT json_build_object('cp', credits_posted::text, 'dp', debits_posted::text, 'dpe', debits_pending::text)
               FROM accounts WHERE user_token = $1 AND currency_code = 'USD') AS a,
            (SELECT coalesce(json_agg(json_build_object('token', jit_token, 'remaining', remaining::text, 'status', status) ORDER BY jit_token COLLATE "C"), '[]')
               FROM hold_states WHERE user_token = $1) AS holds`, [user])
  const a = r.a ?? { cp: '0', dp: '0', dpe: '0' }
  return {
    available: BigInt(a.cp) - BigInt(a.dp) - BigInt(a.dpe),
    ledger: BigInt(a.cp) - BigInt(a.dp),
    holds: r.holds.map((h: any) => ({ token: h.token, remaining: BigInt(h.remaining), status: h.status }))
  }
}

const seed = process.env.FC_SEED !== undefined ? Number(process.env.FC_SEED) : Math.floor(Math.random() * 2 ** 31)
const numRuns = Number(process.env.FC_RUNS ?? 30)

t.test('random ledger operations agree with an in-memory model, and the audit stays clean', async (t) => {
  const db = await testPool(t)
  t.comment(`fast-check seed ${seed} (rerun with FC_SEED=${seed}), ${numRuns} runs`)
  let steps = 0
  let runs = 0
  const outcomes = new Map<string, number>()
  const users: string[] = []
  const started = Date.now()

  const property = fc.asyncProperty(fc.array(opArb, { minLength: 50, maxLength: 150 }), async (ops) => {
    runs++
    const { user, card } = await newCardholder(db, 'mbt')
    users.push(user)
    const m = new Model()
    const base = { user_token: user, currency_code: 'USD', card_token: card }
    const call = async (c: Call): Promise<string> => {
      if (c.fn === 'apply') return (await applyLedger(db, c.effect)).status
      if (c.fn === 'decide') {
        // A JIT decision answers a replay with its first answer; the model calls that a duplicate.
        const d = await decideHold(db, c.hold)
        return d.replay ? 'duplicate' : d.status_code === 200 ? 'applied' : 'declined'
      }
      return (c.fn === 'load' ? await load(db, c.move) : await unload(db, c.move)).status
    }
    const effect = (kind: LedgerEffect['kind'], jit: string, extra: Partial<LedgerEffect> = {}): Call =>
      ({ fn: 'apply', effect: { ...base, kind, jit_token: jit, effect_key: `${jit}:${kind}`, ...extra } })
    const pick = (list: string[], i: number): string => (list.length === 0 ? uniq('none') : list[i % list.length])
    const key = (c: Call): string => (c.fn === 'apply' ? c.effect.effect_key : c.fn === 'decide' ? `${c.hold.jit}:hold` : c.move.effect_key)

    for (const [step, op] of ops.entries()) {
      steps++
      let c: Call | undefined
      let expected: string
      const fresh = (!('target' in op)) || op.op === 'incremental' || op.op === 'jit_incremental' || op.op === 'release' || op.op === 'settle' ? uniq('mbt-j') : ''
      switch (op.op) {
        case 'load': {
          c = { fn: 'load', move: { ...base, amount_minor: BigInt(op.amount), effect_key: uniq('mbt-load') } }
          m.ledger += BigInt(op.amount); expected = 'applied'
          break
        }
        case 'unload': {
          c = { fn: 'unload', move: { ...base, amount_minor: BigInt(op.amount), effect_key: uniq('mbt-unload') } }
          if (m.available >= BigInt(op.amount)) { m.ledger -= BigInt(op.amount); expected = 'applied' } else expected = 'declined'
          break
        }
        case 'hold':
        case 'incremental':
        case 'jit_hold':
        case 'jit_incremental': {
          // A hold placed by a webhook (ledger_apply: a pending transfer) or by a JIT decision (its decision row).
          const original = op.op === 'incremental' || op.op === 'jit_incremental' ? pick(m.tokens, op.target) : undefined
          c = op.op === 'hold' || op.op === 'incremental'
            ? effect('hold', fresh, { amount_minor: BigInt(op.amount), ...(original !== undefined ? { original_jit_token: original } : {}) })
            : { fn: 'decide', hold: { user, card, jit: fresh, amountMinor: BigInt(op.amount), ...(original !== undefined ? { original } : {}) } }
          if (m.available < BigInt(op.amount)) { expected = 'declined'; break }
          expected = 'applied'
          const existing = original === undefined ? undefined : m.pendingHold(original)
          if (existing !== undefined) {
            existing.remaining += BigInt(op.amount)
            m.holdIndex.set(fresh, m.holdIndex.get(original as string) as number)
            m.increments.set(fresh, BigInt(op.amount))
          } else {
            m.holds.push({ token: fresh, remaining: BigInt(op.amount), status: 'PENDING' })
            m.holdIndex.set(fresh, m.holds.length - 1)
          }
          m.tokens.push(fresh)
          break
        }
        case 'release': {
          const original = pick(m.tokens, op.target)
          c = effect('release', fresh, { original_jit_token: original, amount_minor: BigInt(op.amount) })
          const h = m.pendingHold(original)
          if (h !== undefined) m.release(h, BigInt(op.amount), 'VOIDED')
          expected = 'applied'
          break
        }
        case 'settle': {
          const original = pick(m.tokens, op.target)
          c = effect('settle', fresh, { hold_tokens: [original], amount_minor: BigInt(op.amount) })
          const h = m.pendingHold(original)
          if (h !== undefined) m.release(h, undefined, 'POSTED')
          m.ledger -= BigInt(op.amount)
          expected = 'applied'
          break
        }
        case 'void': {
          const token = pick(m.tokens, op.target)
          c = effect('void', token)
          if (m.keys.has(key(c))) { expected = 'duplicate'; break }
          expected = 'applied'
          // A declined or timed-out hold is released; an incremental gives back what it added.
          const i = m.holdIndex.get(token)
          if (i !== undefined && m.holds[i].status === 'PENDING') {
            if (m.holds[i].token === token) m.release(m.holds[i], undefined, 'VOIDED')
            else if (m.increments.has(token)) m.release(m.holds[i], m.increments.get(token), 'VOIDED')
          }
          break
        }
        case 'debit': {
          c = effect('debit', fresh, { amount_minor: BigInt(op.amount) })
          m.debitTokens.push(fresh)
          if (m.available < BigInt(op.amount)) { expected = 'declined'; break }
          m.ledger -= BigInt(op.amount); m.debits.set(fresh, BigInt(op.amount)); expected = 'applied'
          break
        }
        case 'void_debit': {
          const token = pick(m.debitTokens, op.target)
          c = effect('void', token)
          if (m.keys.has(key(c))) { expected = 'duplicate'; break }
          m.ledger += m.debits.get(token) ?? 0n; expected = 'applied'
          break
        }
        case 'credit':
        case 'forced_debit': {
          c = effect(op.op, fresh, { amount_minor: BigInt(op.amount) })
          m.ledger += op.op === 'credit' ? BigInt(op.amount) : -BigInt(op.amount); expected = 'applied'
          break
        }
        case 'expire': {
          if (m.holds.length === 0) continue
          const h = m.holds[op.target % m.holds.length]
          await ageHold(db, h.token)
          await expireHold(db, h.token)
          if (h.status === 'PENDING') m.release(h, undefined, 'EXPIRED')
          expected = 'expired'
          break
        }
        case 'replay': {
          if (m.applied.length === 0) continue
          c = m.applied[op.target % m.applied.length]
          expected = 'duplicate'
          break
        }
      }
      const where = `step ${step} ${JSON.stringify(op)}`
      if (c !== undefined) {
        const status = await call(c)
        if (status !== expected) throw new Error(`${where}: status ${status}, model expected ${expected}`)
        outcomes.set(`${op.op} ${status}`, (outcomes.get(`${op.op} ${status}`) ?? 0) + 1)
        if (status === 'applied') { m.keys.add(key(c)); m.applied.push(c) }
      }
      const seen = await observe(db, user)
      if (seen.available !== m.available || seen.ledger !== m.ledger) {
        throw new Error(`${where}: database available ${seen.available} ledger ${seen.ledger}, model ${m.available} / ${m.ledger}`)
      }
      const modelHolds = m.holds.map((h) => ({ token: h.token, remaining: h.remaining, status: h.status })).sort((a, b) => (a.token < b.token ? -1 : a.token > b.token ? 1 : 0))
      if (JSON.stringify(seen.holds, (_k, v) => typeof v === 'bigint' ? v.toString() : v) !== JSON.stringify(modelHolds, (_k, v) => typeof v === 'bigint' ? v.toString() : v)) {
        throw new Error(`${where}: holds differ\n database ${JSON.stringify(seen.holds, (_k, v) => String(v))}\n model    ${JSON.stringify(modelHolds, (_k, v) => String(v))}`)
      }
    }
    const { violations } = await auditLedger(db, { userTokens: [user] })
    if (violations.length > 0) throw new Error(`audit: ${violations.map((v) => v.message).join('; ')}`)
  })

  // A fixed number of sequences, small enough to finish well inside the budget. The budget only bounds a failing
  // run's shrinking (which re-runs whole sequences against the database); a run it cuts short fails, never passes.
  const result = await fc.check(property, { seed, numRuns, interruptAfterTimeLimit: 100_000, markInterruptAsFailure: true })
  t.comment(`${runs} sequences, ${steps} operations in ${Date.now() - started} ms (seed ${seed})`)
  t.comment([...outcomes].sort().map(([k, n]) => `${k}: ${n}`).join(', '))
  t.notOk(result.failed, result.failed ? fc.defaultReportMessage(result) ?? 'failed' : `seed ${seed}: ${numRuns} runs passed`)
  t.equal(result.interrupted ? -1 : result.numRuns, numRuns, `all ${numRuns} sequences ran (seed ${seed})`)
  t.same((await auditLedger(db, { userTokens: users })).violations, [], 'the audit over every user of this test is clean')
})
