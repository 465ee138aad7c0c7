import { Type, type Static } from '@sinclair/typebox'

/** The part of Marqeta's JIT funding object we read; Marqeta adds fields over time and we accept them all. */
export const JitFundingSchema = Type.Object({
  token: Type.String({ minLength: 1, maxLength: 64 }),
  method: Type.String({ minLength: 1, maxLength: 100 }),
  user_token: Type.String({ minLength: 1, maxLength: 64 }),
  acting_user_token: Type.Optional(Type.String({ maxLength: 64 })),
  // String first: with Fastify's type coercion a JSON number becomes its shortest decimal text, exactly.
  amount: Type.Optional(Type.Union([Type.String(), Type.Number()])),
  original_jit_funding_token: Type.Optional(Type.String({ maxLength: 64 })),
  incremental_authorization_jit_funding_tokens: Type.Optional(Type.Array(Type.String({ maxLength: 64 }))),
  // Echoed in the response as given (Marqeta sends a string); never a reason to refuse the request.
  tags: Type.Optional(Type.Unknown())
}, { additionalProperties: true })
export type JitFunding = Static<typeof JitFundingSchema>

const GpaOrderSchema = Type.Object({
  jit_funding: Type.Optional(JitFundingSchema),
  funding: Type.Optional(Type.Object({
    gateway_log: Type.Optional(Type.Object({ timed_out: Type.Optional(Type.Boolean()) }, { additionalProperties: true }))
  }, { additionalProperties: true }))
}, { additionalProperties: true })

export const TransactionSchema = Type.Object({
  type: Type.Optional(Type.String()),
  state: Type.Optional(Type.String()),
  token: Type.Optional(Type.String({ maxLength: 64 })),
  user_token: Type.Optional(Type.String({ maxLength: 64 })),
  acting_user_token: Type.Optional(Type.String({ maxLength: 64 })),
  card_token: Type.Optional(Type.String({ maxLength: 64 })),
  amount: Type.Optional(Type.Union([Type.String(), Type.Number()])),
  currency_code: Type.Optional(Type.String({ maxLength: 3 })),
  card_acceptor: Type.Optional(Type.Object({
    mid: Type.Optional(Type.String()),
    mcc: Type.Optional(Type.String())
  }, { additionalProperties: true })),
  pos: Type.Optional(Type.Object({ partial_approval_capable: Type.Optional(Type.Boolean()) }, { additionalProperties: true })),
  gpa_order: Type.Optional(GpaOrderSchema),
  gpa_order_unload: Type.Optional(GpaOrderSchema)
}, { additionalProperties: true })
export type Transaction = Static<typeof TransactionSchema>

export const declineReasons = [
  'INVALID_AMOUNT', 'INSUFFICIENT_FUNDS', 'TRANSACTION_NOT_PERMITTED', 'SUSPECTED_FRAUD', 'AMOUNT_LIMIT_EXCEEDED',
  'TRANSACTION_COUNT_LIMIT_EXCEEDED', 'DUPLICATE_TRANSACTION', 'INVALID_MERCHANT', 'INVALID_CARD', 'CLOSED_ACCOUNT',
  'CARD_NOT_ACTIVE', 'CARDHOLDER_NOT_ACTIVE'
] as const
export type DeclineReason = typeof declineReasons[number]

/** Method families of DESIGN §4. */
export type MethodGroup = 'hold' | 'debit' | 'standin_hold' | 'standin_debit' | 'settle' | 'release' | 'credit' |
  'forced_debit' | 'record' | 'inquiry' | 'unknown'

const groups: Record<string, MethodGroup> = {}
const add = (group: MethodGroup, ...methods: string[]): void => { for (const m of methods) groups[m] = group }
add('hold', 'pgfs.authorization', 'pgfs.authorization.incremental', 'pgfs.authorization.cashback', 'pgfs.authorization.quasi.cash',
  'pgfs.atm.withdrawal', 'pgfs.pindebit.authorization', 'pgfs.authorization.account_verification')
add('debit', 'pgfs.auth_plus_capture', 'pgfs.pindebit', 'pgfs.pindebit.atm.withdrawal', 'pgfs.pindebit.cashback', 'pgfs.pindebit.quasi.cash')
add('standin_hold', 'pgfs.authorization.standin')
add('standin_debit', 'pgfs.auth_plus_capture.standin')
add('settle', 'pgfs.authorization.capture', 'pgfs.authorization.clearing', 'pgfs.force_capture')
add('release', 'pgfs.authorization.reversal', 'pgfs.pindebit.authorization.reversal', 'pgfs.authorization.reversal.issuerexpiration')
add('credit', 'pgfs.refund', 'pgfs.pindebit.refund', 'pgfs.refund.authorization.clearing', 'pgfs.original.credit.authorization.clearing',
  'pgfs.original.credit.auth_plus_capture', 'pgfs.authorization.capture.chargeback', 'pgfs.pindebit.chargeback',
  'pgfs.adjustment.credit', 'pgfs.dispute.credit', 'pgfs.directdeposit.credit', 'pgfs.directdeposit.debit.reversal')
add('forced_debit', 'pgfs.adjustment.debit', 'pgfs.dispute.debit', 'pgfs.directdeposit.debit', 'pgfs.directdeposit.credit.reversal')
add('record', 'pgfs.refund.authorization', 'pgfs.refund.authorization.reversal', 'pgfs.original.credit.authorization',
  'pgfs.original.credit.authorization.reversal', 'pgfs.authorization.advice')
add('inquiry', 'pgfs.balanceinquiry', 'pgfs.pindebit.balanceinquiry')

/** Every method of the table above (metric labels take only these). */
export const knownMethods: ReadonlySet<string> = new Set(Object.keys(groups))

export function methodGroup (method: string): MethodGroup {
  const group = groups[method]
  if (group !== undefined) return group
  if (method.endsWith('.chargeback.reversal')) return 'forced_debit'
  return 'unknown'
}

/** Ledger effect kind (ledger_apply) and the effect-key suffix shared by the JIT and webhook paths (DESIGN §5). */
export const effectOf: Partial<Record<MethodGroup, { kind: string, key: string, forced: boolean }>> = {
  hold: { kind: 'hold', key: 'hold', forced: false },
  debit: { kind: 'debit', key: 'debit', forced: false },
  standin_hold: { kind: 'hold', key: 'hold', forced: true },
  standin_debit: { kind: 'debit', key: 'debit', forced: true },
  settle: { kind: 'settle', key: 'post', forced: true },
  release: { kind: 'release', key: 'release', forced: true },
  credit: { kind: 'credit', key: 'credit', forced: true },
  forced_debit: { kind: 'forced_debit', key: 'debit', forced: true }
}

/** The jit_funding object of a transaction, wherever Marqeta put it. */
export function jitFundingOf (txn: Transaction): JitFunding | undefined {
  return txn.gpa_order?.jit_funding ?? txn.gpa_order_unload?.jit_funding
}

/** Tokens whose holds a clearing settles: the original authorization and its incrementals. */
export function settledHoldTokens (jit: JitFunding): string[] {
  const tokens = [jit.original_jit_funding_token ?? jit.token, ...(jit.incremental_authorization_jit_funding_tokens ?? [])]
  return [...new Set(tokens)]
}
