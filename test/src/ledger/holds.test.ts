import t from 'tap'
import { uniq } from '../../helper.js'
import { applyLedger, expireHold, type LedgerEffect } from '../../../src/ledger/apply.js'
import { availableMinor, ledgerMinor, load } from '../../../src/ledger/funds.js'
import { auditLedger } from '../../../src/audit.js'
import { account, ageHold, decideHold, holdOf, newCardholder, testPool } from './helper.js'

t.test('the hold lifecycle through ledger_apply', async (t) => {
  const db = await testPool(t)
  const { user, card } = await newCardholder(db, 'hold')
  const base = { user_token: user, currency_code: 'USD', card_token: card }
  const apply = async (e: Omit<LedgerEffect, 'user_token' | 'currency_code' | 'effect_key'> & { effect_key?: string }) =>
    await applyLedger(db, { ...base, effect_key: `${e.jit_token}:${e.kind}`, ...e })
  const balances = async (): Promise<{ available: bigint, ledger: bigint, pending: bigint }> => {
    const a = await account(db, user)
    if (a === undefined) throw new Error('no account')
    return { available: availableMinor(a), ledger: ledgerMinor(a), pending: a.debits_pending }
  }
  await load(db, { user_token: user, currency_code: 'USD', amount_minor: 100_00n, effect_key: uniq('load') })

  const h1 = uniq('h1')
  await t.test('a hold reserves the amount without touching the ledger balance', async (t) => {
    const r = await apply({ kind: 'hold', jit_token: h1, amount_minor: 30_00n })
    t.equal(r.status, 'applied')
    t.equal(r.approved_minor, 30_00n)
    t.same(await balances(), { available: 70_00n, ledger: 100_00n, pending: 30_00n })
    t.match(await holdOf(db, h1), { status: 'PENDING', amount: 30_00n, remaining: 30_00n })
  })

  await t.test('a replayed hold (same effect key) changes nothing', async (t) => {
    const r = await apply({ kind: 'hold', jit_token: h1, amount_minor: 30_00n })
    t.equal(r.status, 'duplicate')
    t.same(await balances(), { available: 70_00n, ledger: 100_00n, pending: 30_00n })
  })

  const h1inc = uniq('h1i')
  await t.test('an incremental adds to the original hold', async (t) => {
    const r = await apply({ kind: 'hold', jit_token: h1inc, original_jit_token: h1, amount_minor: 10_00n })
    t.equal(r.status, 'applied')
    t.match(await holdOf(db, h1), { status: 'PENDING', amount: 40_00n, remaining: 40_00n })
    t.equal((await holdOf(db, h1inc))?.id, (await holdOf(db, h1))?.id, 'the incremental token points at the same hold')
    t.same(await balances(), { available: 60_00n, ledger: 100_00n, pending: 40_00n })
  })

  await t.test('a clearing below the hold posts what cleared and releases the rest', async (t) => {
    const r = await apply({ kind: 'settle', jit_token: uniq('c1'), hold_tokens: [h1], amount_minor: 35_00n })
    t.equal(r.status, 'applied')
    t.match(await holdOf(db, h1), { status: 'POSTED', remaining: 0n, posted: 35_00n })
    t.same(await balances(), { available: 65_00n, ledger: 65_00n, pending: 0n })
  })

  await t.test('a second clearing of a settled hold is a posted debit', async (t) => {
    const c2 = uniq('c2')
    const r = await apply({ kind: 'settle', jit_token: c2, hold_tokens: [h1], amount_minor: 5_00n })
    t.equal(r.status, 'applied')
    t.match(await holdOf(db, h1), { status: 'POSTED', posted: 35_00n }, 'the hold is resolved once')
    t.same(await balances(), { available: 60_00n, ledger: 60_00n, pending: 0n })
    const { rows } = await db.query('SELECT kind, code, amount::int FROM transfers WHERE jit_token = $1', [c2])
    t.same(rows, [{ kind: 'single', code: 'post.unmatched', amount: 5_00 }])
  })

  const h2 = uniq('h2')
  await t.test('a clearing above the hold posts the whole cleared amount and is never refused', async (t) => {
    await apply({ kind: 'hold', jit_token: h2, amount_minor: 20_00n })
    t.same(await balances(), { available: 40_00n, ledger: 60_00n, pending: 20_00n })
    const r = await apply({ kind: 'settle', jit_token: uniq('c3'), hold_tokens: [h2], amount_minor: 25_00n })
    t.equal(r.status, 'applied')
    t.match(await holdOf(db, h2), { status: 'POSTED', posted: 25_00n, remaining: 0n })
    t.same(await balances(), { available: 35_00n, ledger: 35_00n, pending: 0n })
  })

  await t.test('a void after settlement is a no-op', async (t) => {
    const r = await apply({ kind: 'void', jit_token: h2 })
    t.equal(r.approved_minor, 0n)
    t.match(await holdOf(db, h2), { status: 'POSTED' })
    t.same(await balances(), { available: 35_00n, ledger: 35_00n, pending: 0n })
  })

  const h3 = uniq('h3')
  await t.test('partial reversals release part of the hold, a full one voids it, at most what is left', async (t) => {
    await apply({ kind: 'hold', jit_token: h3, amount_minor: 30_00n })
    const partial = await apply({ kind: 'release', jit_token: uniq('r1'), original_jit_token: h3, amount_minor: 10_00n })
    t.equal(partial.approved_minor, 10_00n)
    t.match(await holdOf(db, h3), { status: 'PENDING', remaining: 20_00n })
    t.same(await balances(), { available: 15_00n, ledger: 35_00n, pending: 20_00n })
    const full = await apply({ kind: 'release', jit_token: uniq('r2'), original_jit_token: h3, amount_minor: 50_00n })
    t.equal(full.approved_minor, 20_00n, 'never releases more than is left')
    t.match(await holdOf(db, h3), { status: 'VOIDED', remaining: 0n })
    t.same(await balances(), { available: 35_00n, ledger: 35_00n, pending: 0n })
    const late = await apply({ kind: 'release', jit_token: uniq('r3'), original_jit_token: h3, amount_minor: 1_00n })
    t.equal(late.approved_minor, 0n, 'a reversal of a resolved hold releases nothing')
    t.same(await balances(), { available: 35_00n, ledger: 35_00n, pending: 0n })
  })

  await t.test('a void releases a pending hold', async (t) => {
    const h4 = uniq('h4')
    await apply({ kind: 'hold', jit_token: h4, amount_minor: 5_00n })
    const r = await apply({ kind: 'void', jit_token: h4 })
    t.equal(r.approved_minor, 5_00n)
    t.match(await holdOf(db, h4), { status: 'VOIDED', remaining: 0n })
    t.same(await balances(), { available: 35_00n, ledger: 35_00n, pending: 0n })
  })

  await t.test('a hold expires once after its expiry time', async (t) => {
    const h5 = uniq('h5')
    await apply({ kind: 'hold', jit_token: h5, amount_minor: 10_00n })
    t.equal(await expireHold(db, h5), 0n, 'not before its time')
    t.match(await holdOf(db, h5), { status: 'PENDING' })
    await ageHold(db, h5)
    t.equal(await expireHold(db, h5), 10_00n)
    t.match(await holdOf(db, h5), { status: 'EXPIRED', remaining: 0n })
    t.equal(await expireHold(db, h5), 0n, 'a hold resolves at most once')
    t.same(await balances(), { available: 35_00n, ledger: 35_00n, pending: 0n })
  })

  await t.test('an actionable hold is declined without funds; a stand-in hold overdraws', async (t) => {
    const declined = await apply({ kind: 'hold', jit_token: uniq('h6'), amount_minor: 35_01n })
    t.match(declined, { status: 'declined', reason: 'INSUFFICIENT_FUNDS' })
    const forced = await apply({ kind: 'hold', jit_token: uniq('h7'), amount_minor: 40_00n, forced: true })
    t.match(forced, { status: 'applied', overdrawn: true })
    t.same(await balances(), { available: -5_00n, ledger: 35_00n, pending: 40_00n })
  })

  await t.test('an immediate debit is posted, and its void gives the money back once', async (t) => {
    await load(db, { user_token: user, currency_code: 'USD', amount_minor: 50_00n, effect_key: uniq('load') })
    const d = uniq('d1')
    const debit = await apply({ kind: 'debit', jit_token: d, amount_minor: 20_00n })
    t.equal(debit.status, 'applied')
    t.same(await balances(), { available: 25_00n, ledger: 65_00n, pending: 40_00n })
    await apply({ kind: 'void', jit_token: d })
    t.same(await balances(), { available: 45_00n, ledger: 85_00n, pending: 40_00n })
    t.equal((await apply({ kind: 'void', jit_token: d })).status, 'duplicate')
    t.same(await balances(), { available: 45_00n, ledger: 85_00n, pending: 40_00n })
  })

  await t.test('the audit finds nothing wrong with this user', async (t) => {
    const { violations, checked } = await auditLedger(db, { userTokens: [user] })
    t.same(violations, [])
    t.equal(checked.holds, 6, "h1, h2, h3, h4, h5 and the stand-in hold")
  })
})

t.test('a hold placed by a JIT decision is its decision row until its first change, then goes through the same lifecycle', async (t) => {
  const db = await testPool(t)
  const { user, card } = await newCardholder(db, 'dhold')
  const base = { user_token: user, currency_code: 'USD', card_token: card }
  await load(db, { user_token: user, currency_code: 'USD', amount_minor: 100_00n, effect_key: uniq('load') })
  const rowOf = async (jit: string): Promise<number> => (await db.query('SELECT 1 FROM holds WHERE jit_token = $1', [jit])).rowCount ?? 0

  const d1 = uniq('d1')
  t.equal((await decideHold(db, { user, card, jit: d1, amountMinor: 30_00n })).status_code, 200)
  t.match(await holdOf(db, d1), { id: d1, status: 'PENDING', amount: 30_00n, remaining: 30_00n, posted: 0n })
  t.equal(await rowOf(d1), 0, 'no holds row yet')
  t.equal((await db.query('SELECT 1 FROM transfers WHERE hold_jit_token = $1', [d1])).rowCount, 0, 'and no transfer: the decision is the hold')
  t.match(await applyLedger(db, { ...base, kind: 'hold', jit_token: d1, effect_key: `${d1}:hold`, amount_minor: 30_00n }), { status: 'duplicate', approved_minor: 30_00n },
    'the same hold arriving as a webhook is the decision\'s')

  const d1i = uniq('d1i')
  t.equal((await decideHold(db, { user, card, jit: d1i, amountMinor: 5_00n, original: d1 })).status_code, 200)
  t.match(await holdOf(db, d1i), { id: d1, amount: 35_00n, remaining: 35_00n }, 'an incremental decision adds to the hold it names')
  t.equal(await rowOf(d1), 1, 'which now has its row')
  const partial = await applyLedger(db, { ...base, kind: 'release', jit_token: uniq('r'), effect_key: uniq('r'), original_jit_token: d1i, amount_minor: 15_00n })
  t.equal(partial.approved_minor, 15_00n, 'a reversal naming the incremental releases from the original hold')
  const settled = await applyLedger(db, { ...base, kind: 'settle', jit_token: uniq('c'), effect_key: uniq('c'), hold_tokens: [d1], amount_minor: 25_00n })
  t.equal(settled.status, 'applied')
  t.match(await holdOf(db, d1), { status: 'POSTED', amount: 35_00n, remaining: 0n, posted: 25_00n })

  const d2 = uniq('d2')
  await decideHold(db, { user, card, jit: d2, amountMinor: 10_00n })
  t.equal(await expireHold(db, d2), 0n, 'not before its time')
  t.match(await holdOf(db, d2), { status: 'PENDING', remaining: 10_00n })
  await ageHold(db, d2)
  t.equal(await expireHold(db, d2), 10_00n)
  t.match(await holdOf(db, d2), { status: 'EXPIRED', remaining: 0n })

  const a = await account(db, user)
  t.same(a === undefined ? undefined : { available: availableMinor(a), ledger: ledgerMinor(a), pending: a.debits_pending }, { available: 75_00n, ledger: 75_00n, pending: 0n })
  const { violations, checked } = await auditLedger(db, { userTokens: [user] })
  t.same(violations, [])
  t.equal(checked.holds, 2)
})

t.test('Marqeta declining or timing out an approved incremental releases what it added, and only that', async (t) => {
  const db = await testPool(t)
  const { user, card } = await newCardholder(db, 'voidinc')
  await load(db, { user_token: user, currency_code: 'USD', amount_minor: 100_00n, effect_key: uniq('load') })
  const original = uniq('vi-o')
  const incremental = uniq('vi-i')
  t.equal((await decideHold(db, { user, card, jit: original, amountMinor: 10_00n })).status_code, 200)
  t.equal((await decideHold(db, { user, card, jit: incremental, amountMinor: 5_00n, original })).status_code, 200)
  t.match(await holdOf(db, original), { amount: 15_00n, remaining: 15_00n })
  const r = await applyLedger(db, { kind: 'void', effect_key: `${incremental}:void`, user_token: user, currency_code: 'USD', jit_token: incremental, forced: true })
  t.equal(r.approved_minor, 5_00n, 'the incremental\'s amount released')
  t.match(await holdOf(db, original), { status: 'PENDING', amount: 15_00n, remaining: 10_00n })
  t.match(await account(db, user), { debits_pending: 10_00n })
  t.same((await auditLedger(db, { userTokens: [user] })).violations, [])
})

t.test('an incremental naming another cardholder\'s hold neither adds to it nor creates its row', async (t) => {
  const db = await testPool(t)
  const owner = await newCardholder(db, 'own')
  const other = await newCardholder(db, 'oth')
  for (const u of [owner.user, other.user]) await load(db, { user_token: u, currency_code: 'USD', amount_minor: 50_00n, effect_key: uniq('load') })
  const original = uniq('own-h')
  await decideHold(db, { ...owner, jit: original, amountMinor: 10_00n })
  const foreign = uniq('oth-i')
  t.equal((await decideHold(db, { ...other, jit: foreign, amountMinor: 2_00n, original })).status_code, 200, 'approved as a hold of its own')
  t.match(await holdOf(db, original), { amount: 10_00n, remaining: 10_00n })
  t.equal((await db.query('SELECT count(*)::int AS n FROM holds WHERE jit_token = $1', [original])).rows[0].n, 0, 'the owner\'s hold row was not created')
  t.match(await holdOf(db, foreign), { id: foreign, amount: 2_00n })
})
