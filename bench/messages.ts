/**
 * Marqeta JIT funding messages as the bench and the simulator send them, shaped like the fixtures in
 * ../shared/fixtures/marqeta (a transaction object with gpa_order.jit_funding, or gpa_order_unload for releases).
 * Amounts are integer minor units here and are written as a decimal string or a JSON number, never computed in floats.
 */

export interface Merchant { mid: string, mcc: string, name: string }

export const merchants: Merchant[] = [
  { mid: '000000091234', mcc: '5411', name: 'Corner Grocery' },
  { mid: '000000047110', mcc: '5812', name: 'Trattoria Roma' },
  { mid: '000000055220', mcc: '5541', name: 'Fuel Stop 22' },
  { mid: '000000070011', mcc: '7011', name: 'Harbor Hotel' },
  { mid: '000000059990', mcc: '5999', name: 'General Store' },
  { mid: '000000048140', mcc: '4814', name: 'Telco Online' },
  { mid: '000000058140', mcc: '5814', name: 'Quick Burger' },
  { mid: '000000041210', mcc: '4121', name: 'City Cab' }
]

/** Minor units as a decimal text with two decimals ("12.05"); exact for any bigint or safe integer. */
export function decimalText (minor: bigint | number): string {
  const value = BigInt(minor)
  const negative = value < 0n
  const digits = (negative ? -value : value).toString().padStart(3, '0')
  return `${negative ? '-' : ''}${digits.slice(0, -2)}.${digits.slice(-2)}`
}

/**
 * Minor units as what Marqeta may send: a JSON number (its shortest decimal text is exact for cents), or a string.
 * `Number("12.05")` is the double whose shortest representation is "12.05", which is what the gateway reads.
 */
export function amountValue (minor: bigint | number, asString: boolean): number | string {
  const text = decimalText(minor)
  return asString ? text : Number(text)
}

/** Marqeta's decimal amounts (number or text) back to minor units, exactly, through the decimal text. */
export function toMinor (amount: number | string): bigint {
  const text = typeof amount === 'number' ? String(amount) : amount.trim()
  const match = /^(-)?(\d+)(?:\.(\d{1,2})0*)?$/.exec(text)
  if (match === null) throw new Error(`not an amount in cents: ${text}`)
  const minor = BigInt(match[2]) * 100n + BigInt((match[3] ?? '').padEnd(2, '0') || '0')
  return match[1] === '-' ? -minor : minor
}

export interface JitMessage {
  method: string
  jitToken: string
  transactionToken: string
  userToken: string
  cardToken: string
  amountMinor: bigint | number
  amountAsString?: boolean
  /** Sent as is instead of amountMinor (invalid amounts on purpose). */
  rawAmount?: number | string
  merchant?: Merchant
  originalJitToken?: string
  incrementalTokens?: string[]
  partialApprovalCapable?: boolean
  currencyCode?: string
}

const typeOfMethod: Record<string, string> = {
  'pgfs.authorization': 'authorization',
  'pgfs.authorization.incremental': 'authorization.incremental',
  'pgfs.authorization.capture': 'authorization.clearing',
  'pgfs.authorization.reversal': 'authorization.reversal',
  'pgfs.authorization.reversal.issuerexpiration': 'authorization.reversal.issuerexpiration',
  'pgfs.refund': 'refund',
  'pgfs.balanceinquiry': 'balanceinquiry',
  'pgfs.auth_plus_capture': 'authorization.clearing'
}

/** Messages that give money back travel in gpa_order_unload, as Marqeta sends reversals and refunds. */
const unloadMethods = new Set(['pgfs.authorization.reversal', 'pgfs.authorization.reversal.issuerexpiration', 'pgfs.refund'])

/** One Marqeta transaction carrying a jit_funding object. */
export function jitMessage (m: JitMessage): Record<string, unknown> {
  const merchant = m.merchant ?? merchants[0]
  const amount = m.rawAmount ?? amountValue(m.amountMinor, m.amountAsString === true)
  const currency = m.currencyCode ?? 'USD'
  const jitFunding: Record<string, unknown> = {
    token: m.jitToken,
    method: m.method,
    user_token: m.userToken,
    acting_user_token: m.userToken,
    amount
  }
  if (m.originalJitToken !== undefined) jitFunding.original_jit_funding_token = m.originalJitToken
  if (m.incrementalTokens !== undefined && m.incrementalTokens.length > 0) jitFunding.incremental_authorization_jit_funding_tokens = m.incrementalTokens
  const order = {
    token: `go-${m.transactionToken}`,
    amount,
    state: 'PENDING',
    currency_code: currency,
    user_token: m.userToken,
    funding: { amount, source: { type: 'programgateway', token: 'pgfs-program' } },
    jit_funding: jitFunding
  }
  const now = new Date().toISOString()
  return {
    type: typeOfMethod[m.method] ?? m.method.replace(/^pgfs\./, ''),
    state: 'PENDING',
    token: m.transactionToken,
    user_token: m.userToken,
    acting_user_token: m.userToken,
    card_token: m.cardToken,
    created_time: now,
    user_transaction_time: now,
    request_amount: amount,
    amount,
    currency_code: currency,
    network: 'VISA',
    card_acceptor: { mid: merchant.mid, mcc: merchant.mcc, name: merchant.name, country_code: 'USA' },
    pos: { pan_entry_mode: 'CHIP', card_presence: true, partial_approval_capable: m.partialApprovalCapable === true, is_recurring: false },
    [unloadMethods.has(m.method) ? 'gpa_order_unload' : 'gpa_order']: order
  }
}

/** A webhook item (DESIGN §5): the transaction as Marqeta reports it afterwards, e.g. a clearing or a timed-out answer. */
export function webhookTransaction (m: JitMessage & { type: string, state: string, timedOut?: boolean }): Record<string, unknown> {
  const txn = jitMessage(m)
  txn.type = m.type
  txn.state = m.state
  const order = (txn.gpa_order ?? txn.gpa_order_unload) as Record<string, unknown>
  order.funding = { ...(order.funding as object), gateway_log: { transaction_id: m.jitToken, timed_out: m.timedOut === true, ...(m.timedOut === true ? { duration: 3001 } : { response: { code: '200' } }) } }
  return txn
}

export const pingBody = { pings: [{ token: 'marqeta', payload: 'healthcheck' }] }

export function basicAuth (user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`
}
