import t from 'tap'
import { InvalidWebhookItemError, planTransaction, type TransactionPlan } from '../../src/webhooks/transaction.js'
import { fixture } from './webhooks-helpers.js'

const txn = (method: string, extra: Record<string, unknown> = {}, jit: Record<string, unknown> = {}): Record<string, unknown> => ({
  type: method.replace(/^pgfs\./, ''),
  state: 'PENDING',
  token: 'txn-1',
  user_token: 'user-1',
  card_token: 'card-1',
  currency_code: 'USD',
  card_acceptor: { mcc: '5411', mid: 'mid-1' },
  gpa_order: { jit_funding: { token: 'jit-1', method, user_token: 'user-1', amount: '12.34', ...jit } },
  ...extra
})

const ledger = (plan: TransactionPlan) => {
  if (plan.action !== 'ledger') throw new Error(`expected a ledger effect, got ${JSON.stringify(plan)}`)
  return plan
}

t.test('the clearing fixture settles the original hold and its incremental, keyed like the JIT path', async (t) => {
  const plan = ledger(planTransaction(fixture('webhook-clearing.json').transactions[0], 7))
  t.match(plan.effect, {
    kind: 'settle',
    effect_key: 'jit-0005:post',
    user_token: 'user-ada',
    currency_code: 'USD',
    amount_minor: '5017',
    forced: true,
    jit_token: 'jit-0005',
    transaction_token: 'txn-clear-0005',
    hold_tokens: ['jit-0001', 'jit-0002']
  })
  t.same(plan.supersedes, ['jit-0001:hold', 'jit-0002:hold'])
})

t.test('the reversal fixture releases part of its original hold; the timed-out authorization voids its own', async (t) => {
  const [reversal, timedOut] = fixture('webhook-reversal-and-timeout.json').transactions
  t.match(ledger(planTransaction(reversal, 7)).effect, {
    kind: 'release', effect_key: 'jit-0006:release', original_jit_token: 'jit-0100', amount_minor: '1250', user_token: 'user-bob'
  })
  const voided = ledger(planTransaction(timedOut, 7))
  t.match(voided.effect, { kind: 'void', effect_key: 'jit-0101:void', jit_token: 'jit-0101', amount_minor: '0', reason: 'timed_out' })
  t.same(voided.supersedes, ['jit-0101:hold'])
})

t.test('each method group has its effect', async (t) => {
  const cases: Array<[string, Record<string, unknown>]> = [
    ['pgfs.authorization', { kind: 'hold', effect_key: 'jit-1:hold', forced: true, mcc: '5411', mid: 'mid-1', hold_expiration_days: 7 }],
    ['pgfs.authorization.incremental', { kind: 'hold', effect_key: 'jit-1:hold', original_jit_token: 'jit-0' }],
    ['pgfs.authorization.standin', { kind: 'hold', effect_key: 'jit-1:hold', forced: true }],
    ['pgfs.auth_plus_capture', { kind: 'debit', effect_key: 'jit-1:debit', forced: true, mcc: '5411' }],
    ['pgfs.auth_plus_capture.standin', { kind: 'debit', effect_key: 'jit-1:debit' }],
    ['pgfs.force_capture', { kind: 'settle', effect_key: 'jit-1:post', hold_tokens: ['jit-0'] }],
    ['pgfs.authorization.reversal.issuerexpiration', { kind: 'release', effect_key: 'jit-1:release', original_jit_token: 'jit-0' }],
    ['pgfs.refund', { kind: 'credit', effect_key: 'jit-1:credit' }],
    ['pgfs.authorization.capture.chargeback', { kind: 'credit', effect_key: 'jit-1:credit' }],
    ['pgfs.dispute.debit', { kind: 'forced_debit', effect_key: 'jit-1:debit' }],
    ['pgfs.authorization.capture.chargeback.reversal', { kind: 'forced_debit', effect_key: 'jit-1:debit' }]
  ]
  for (const [method, effect] of cases) {
    t.match(ledger(planTransaction(txn(method, {}, { original_jit_funding_token: 'jit-0' }), 7)).effect, { amount_minor: '1234', ...effect }, method)
  }
})

t.test('record-only, inquiry and unknown methods change nothing', async (t) => {
  for (const method of ['pgfs.refund.authorization', 'pgfs.authorization.advice', 'pgfs.balanceinquiry', 'pgfs.something.new']) {
    t.equal(planTransaction(txn(method), 7).action, 'none', method)
  }
})

t.test('a DECLINED state voids what the JIT path did for a hold or a debit, and cancels anything else', async (t) => {
  t.match(ledger(planTransaction(txn('pgfs.authorization', { state: 'DECLINED' }), 7)).effect, { kind: 'void', effect_key: 'jit-1:void', reason: 'declined' })
  const debit = ledger(planTransaction(txn('pgfs.pindebit', { state: 'DECLINED' }), 7))
  t.match(debit.effect, { kind: 'void', effect_key: 'jit-1:void' })
  t.same(debit.supersedes, ['jit-1:debit'])
  t.equal(planTransaction(txn('pgfs.refund', { state: 'DECLINED' }), 7).action, 'none')
  t.equal(planTransaction(txn('pgfs.authorization.clearing', { state: 'ERROR' }), 7).action, 'none')
  // timed_out only concerns the gateway's answer to an actionable message.
  const late = txn('pgfs.authorization', { gpa_order: { funding: { gateway_log: { timed_out: true } }, jit_funding: { token: 'jit-9', method: 'pgfs.authorization', user_token: 'user-1', amount: 1 } } })
  t.match(ledger(planTransaction(late, 7)).effect, { kind: 'void', effect_key: 'jit-9:void', reason: 'timed_out' })
})

t.test('amounts are exact in the currency exponent, default USD', async (t) => {
  t.equal(ledger(planTransaction(txn('pgfs.refund', {}, { amount: 0.1 }), 7)).effect.amount_minor, '10')
  t.equal(ledger(planTransaction(txn('pgfs.refund', {}, { amount: '19.990' }), 7)).effect.amount_minor, '1999')
  t.equal(ledger(planTransaction(txn('pgfs.refund', { currency_code: 'JPY' }, { amount: 1500 }), 7)).effect.amount_minor, '1500')
  t.equal(ledger(planTransaction(txn('pgfs.refund', { currency_code: 'BHD' }, { amount: '1.234' }), 7)).effect.amount_minor, '1234')
  const noCurrency = txn('pgfs.refund')
  delete noCurrency.currency_code
  t.equal(ledger(planTransaction(noCurrency, 7)).effect.currency_code, 'USD')
  t.throws(() => planTransaction(txn('pgfs.refund', {}, { amount: '1.234' }), 7), InvalidWebhookItemError)
  t.throws(() => planTransaction(txn('pgfs.refund', {}, { amount: 'abc' }), 7), /jit_funding.amount not a number/)
  t.throws(() => planTransaction(txn('pgfs.refund', { currency_code: 'ZZZ' }), 7), /unknown currency_code/)
  t.throws(() => planTransaction('not an object', 7), InvalidWebhookItemError)
  t.throws(() => planTransaction(txn('pgfs.refund', { token: 42 }), 7), /\/token/)
})

t.test('without jit_funding: keyed by (transaction token, type), posted movements only', async (t) => {
  const refund = { type: 'refund', state: 'COMPLETION', token: 'txn-r', user_token: 'user-1', amount: 5, currency_code: 'USD' }
  t.match(ledger(planTransaction(refund, 7)).effect, { kind: 'credit', effect_key: 'txn-r:refund', amount_minor: '500', user_token: 'user-1' })
  t.match(ledger(planTransaction({ ...refund, type: 'authorization.clearing' }, 7)).effect, { kind: 'forced_debit', effect_key: 'txn-r:authorization.clearing' })
  t.equal(planTransaction({ ...refund, type: 'authorization' }, 7).action, 'none', 'a hold needs a JIT token')
  t.equal(planTransaction({ ...refund, type: 'gpa.credit' }, 7).action, 'none', 'a program funding movement is not ours')
  t.equal(planTransaction({ type: 'refund' }, 7).action, 'none')
})
