import type pg from 'pg'
import { currencyExponent, parseAmount } from '../money.js'
import { effectOf, jitFundingOf, methodGroup, settledHoldTokens, type JitFunding, type MethodGroup, type Transaction } from '../marqeta.js'
import { isConnectionError } from '../db.js'
import { loadAuthContext, type ContextSource, type ContextVersions } from './context.js'
import { checkCardAndHolder, checkSpendingControls, type Purchase, type RuleOutcome } from './rules.js'
import type { JitStage } from '../metrics.js'
import { callJitDecide, DeadlineError, isPoolTimeout, LedgerUnavailableError, STALE_CONTEXT, withDeadline, type DecisionRow, type LedgerCall } from './ledger-call.js'

export interface DecisionDeps {
  pool: pg.Pool
  context: ContextSource
  now: () => Date
  partialApproval: boolean
  holdExpirationDays: number
  /** Called as each stage ends, with its duration in ms. */
  stage: (stage: JitStage) => void
  /** The money-moving call (a JitBatcher's); by default one jit_decide statement per decision on `pool`. */
  ledger?: LedgerCall
}

// A fresh context goes stale again only if the cardholder changes again within a round trip: rare twice in a row.
const MAX_ATTEMPTS = 3

export interface JitAnswer {
  statusCode: 200 | 402
  /** The exact response text; a replay gets these bytes again. */
  body: string
  replay: boolean
  /** 'recorded' for informative messages (settle, release, credit, record only, unknown): not an approval decision. */
  result: 'approved' | 'declined' | 'recorded'
  reason?: string
  group: MethodGroup
  /** The ledger effect of this message drove the account negative (stand-in, forced posting): counted in a metric. */
  overdrawn: boolean
}

type Mode = 'decide' | 'effect' | 'inquiry' | 'record'

const modeOf: Record<MethodGroup, Mode> = {
  hold: 'decide',
  debit: 'decide',
  standin_hold: 'effect',
  standin_debit: 'effect',
  settle: 'effect',
  release: 'effect',
  credit: 'effect',
  forced_debit: 'effect',
  record: 'record',
  inquiry: 'inquiry',
  unknown: 'record'
}

/**
 * What the response echoes from the request (DESIGN §4): token, method, user_token, and the acting user, the original
 * and incremental tokens and the tags when the request has them.
 */
function echoOf (jit: JitFunding): Record<string, unknown> {
  const echo: Record<string, unknown> = { token: jit.token, method: jit.method, user_token: jit.user_token }
  if (jit.acting_user_token !== undefined) echo.acting_user_token = jit.acting_user_token
  if (jit.original_jit_funding_token !== undefined) echo.original_jit_funding_token = jit.original_jit_funding_token
  if (jit.incremental_authorization_jit_funding_tokens !== undefined) echo.incremental_authorization_jit_funding_tokens = jit.incremental_authorization_jit_funding_tokens
  if (jit.tags !== undefined) echo.tags = jit.tags
  return echo
}

/** The amount as a JSON number's text for the response: requested amounts are echoed, unparsable ones as 0. */
function amountText (value: unknown): string {
  if (typeof value === 'number' && Number.isFinite(value)) return String(value)
  if (typeof value === 'string' && /^-?\d+(\.\d+)?$/.test(value.trim())) return value.trim()
  return '0'
}

/**
 * Decides one JIT funding request (DESIGN §4): rules in TypeScript on the (cached) context, then the whole
 * money-moving part and the idempotency record in one database call, `jit_decide`.
 */
export async function decideJit (deps: DecisionDeps, txn: Transaction, jit: JitFunding, deadlineAt: number): Promise<JitAnswer> {
  try {
    return await decide(deps, txn, jit, deadlineAt)
  } catch (err) {
    if (!isEncodingError(err)) throw err
    // PostgreSQL text cannot hold U+0000 nor jsonb an unpaired surrogate (anywhere in the message, even in a field
    // we ignore, it failed the statement, which rolled back entirely). Decided again with them replaced by U+FFFD:
    // bad input is never a 500.
    const clean = withoutNul(txn)
    return await decide(deps, clean, jitFundingOf(clean) ?? withoutNul(jit), deadlineAt)
  }
}

// 22P02 with a Unicode detail: jsonb refuses an unpaired surrogate escape ("\ud800"), which JSON.parse accepts.
const isEncodingError = (err: unknown): boolean => {
  const e = err as { code?: string, detail?: string }
  return ['22021', '22P05'].includes(e?.code ?? '') || (e?.code === '22P02' && /surrogate|Unicode/i.test(e.detail ?? ''))
}

function withoutNul<T> (value: T): T {
  if (typeof value === 'string') return value.replace(/\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD') as T
  if (Array.isArray(value)) return value.map(withoutNul) as T
  if (value !== null && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [withoutNul(k), withoutNul(v)])) as T
  return value
}

async function decide (deps: DecisionDeps, txn: Transaction, jit: JitFunding, deadlineAt: number): Promise<JitAnswer> {
  const group = methodGroup(jit.method)
  const mode = modeOf[group]
  const currencyCode = txn.currency_code ?? 'USD'
  const exponent = currencyExponent(currencyCode)
  const echo = echoOf(jit)
  const accountVerification = jit.method === 'pgfs.authorization.account_verification'
  const parsed = parseAmount(jit.amount ?? (group === 'inquiry' || accountVerification ? 0 : undefined), exponent ?? 2)
  const amountMinor = parsed.ok ? parsed.minor : 0n

  // The ledger_apply argument (schema/functions/ledger_apply.sql) shared by decided and informative methods; keyed like webhooks.
  const effectCall = (): Record<string, unknown> => ({
    kind: effectOf[group]!.kind,
    effect_key: `${jit.token}:${effectOf[group]!.key}`,
    user_token: jit.user_token,
    currency_code: currencyCode,
    amount_minor: amountMinor.toString(),
    jit_token: jit.token,
    transaction_token: txn.token,
    card_token: txn.card_token,
    mcc: txn.card_acceptor?.mcc,
    mid: txn.card_acceptor?.mid,
    original_jit_token: jit.original_jit_funding_token,
    hold_expiration_days: deps.holdExpirationDays
  })
  const call = (outcome: RuleOutcome | undefined, effect: Record<string, unknown> | undefined, versions?: ContextVersions): Record<string, unknown> => {
    const declined = outcome?.decline !== undefined ? outcome : undefined
    return {
      echo,
      mode: mode === 'effect' && effect === undefined ? 'record' : mode,
      decline_reason: declined?.decline,
      memo: declined?.memo ?? (group === 'unknown' ? `unknown method ${jit.method}; recorded` : undefined),
      amount_text: amountText(jit.amount),
      exponent: exponent ?? 2,
      currency_code: currencyCode,
      card_token: txn.card_token,
      transaction_token: txn.token,
      effect,
      request: txn,
      versions
    }
  }
  const ledger = deps.ledger ?? ((c, at) => callJitDecide(deps.pool, c, at))

  if (mode !== 'decide' && mode !== 'inquiry') {
    let effect: Record<string, unknown> | undefined
    if (mode === 'effect' && parsed.ok && exponent !== undefined) {
      effect = { ...effectCall(), forced: true, hold_tokens: group === 'settle' ? settledHoldTokens(jit) : undefined }
    } else {
      deps.stage('context')
      deps.stage('rules')
    }
    const informative = call(undefined, effect)
    const row = await ledger(informative, deadlineAt)
    deps.stage('ledger')
    if (row === undefined) return deadlineAnswer(deps.pool, txn, jit, echo, group)
    return answerOf(row, group, true)
  }

  // Rules on the (cached) context, then the ledger, which refuses a context older than the current versions:
  // then the context is loaded again straight from PostgreSQL and the decision made again.
  for (let attempt = 1; ; attempt++) {
    const ctx = await withinDeadline(loadAuthContext(deps.context, txn.card_token, jit.user_token, attempt > 1), deadlineAt)
    if (ctx === undefined) return deadlineAnswer(deps.pool, txn, jit, echo, group)
    deps.stage('context')
    const purchase: Purchase = {
      cardToken: txn.card_token,
      userToken: jit.user_token,
      actingUserToken: jit.acting_user_token,
      currencyCode,
      amountMinor,
      mcc: txn.card_acceptor?.mcc,
      mid: txn.card_acceptor?.mid,
      incremental: jit.original_jit_funding_token !== undefined
    }
    let outcome = checkCardAndHolder(ctx, purchase)
    if (outcome === undefined && exponent === undefined) outcome = { decline: 'TRANSACTION_NOT_PERMITTED', memo: `unsupported currency ${currencyCode}` }
    if (outcome === undefined && mode === 'decide') {
      if (!parsed.ok) outcome = { decline: 'INVALID_AMOUNT', memo: `amount ${parsed.error.replace(/_/g, ' ')}` }
      else if (amountMinor === 0n && !accountVerification) outcome = { decline: 'INVALID_AMOUNT', memo: 'amount is zero' }
      else outcome = checkSpendingControls(ctx, purchase, deps.now())
    }
    deps.stage('rules')
    let effect: Record<string, unknown> | undefined
    if (mode === 'decide' && outcome?.decline === undefined) {
      effect = {
        ...effectCall(),
        velocity: outcome?.velocity ?? [],
        partial_ok: deps.partialApproval && txn.pos?.partial_approval_capable === true
      }
    }
    const row = await ledger(call(outcome, effect, ctx.versions), deadlineAt)
    deps.stage('ledger')
    if (row === undefined) return deadlineAnswer(deps.pool, txn, jit, echo, group)
    if (row.status_code !== STALE_CONTEXT) return answerOf(row, group, false)
    if (attempt >= MAX_ATTEMPTS) {
      return unrecordedDecline(deps.pool, txn, jit, echo, group, 'authorization context changed during the decision; nothing was held', 'STALE_CONTEXT')
    }
  }
}

function answerOf (row: DecisionRow, group: MethodGroup, informative: boolean): JitAnswer {
  const statusCode = row.status_code as 200 | 402
  return {
    statusCode,
    body: row.response,
    replay: row.replay,
    result: informative ? 'recorded' : statusCode === 200 ? 'approved' : 'declined',
    reason: statusCode === 402 ? (JSON.parse(row.response).jit_funding?.decline_reason as string) : undefined,
    group,
    overdrawn: row.overdrawn === true
  }
}

/**
 * The answer past the deadline: a decline, nothing held. It is recorded as this token's decision (off the answer's
 * path, best effort) so that a replay gets the same bytes instead of a fresh decision that could hold money Marqeta
 * was told it would not get. Only a token nobody decided yet is recorded (ON CONFLICT DO NOTHING).
 */
function deadlineAnswer (pool: pg.Pool, txn: Transaction, jit: JitFunding, echo: Record<string, unknown>, group: MethodGroup): JitAnswer {
  return unrecordedDecline(pool, txn, jit, echo, group, 'gateway deadline exceeded; nothing was held', 'DEADLINE')
}

/** A decline decided outside jit_decide (see deadlineAnswer), recorded best effort as the token's one row. */
function unrecordedDecline (pool: pg.Pool, txn: Transaction, jit: JitFunding, echo: Record<string, unknown>, group: MethodGroup, memo: string, reason: string): JitAnswer {
  const body = JSON.stringify({ jit_funding: { ...echo, amount: Number(amountText(jit.amount)), decline_reason: 'TRANSACTION_NOT_PERMITTED', memo } })
  pool.query(`INSERT INTO decisions (jit_token, method, user_token, card_token, transaction_token, result, decline_reason, status_code, response, currency_code, request)
              VALUES ($1, $2, $3, $4, $5, 'declined', 'TRANSACTION_NOT_PERMITTED', 402, $6, $7, $8) ON CONFLICT (jit_token) DO NOTHING`,
  [jit.token, jit.method, jit.user_token, txn.card_token ?? null, txn.token ?? null, body, (txn.currency_code ?? 'USD').slice(0, 3), txn])
    .catch(() => { /* best effort: without the record a replay is decided afresh */ })
  return { statusCode: 402, body, replay: false, result: 'declined', reason, group, overdrawn: false }
}

/**
 * The context load is bounded by the deadline like the ledger call, and a PostgreSQL that cannot be reached
 * while loading it is a 503 as well (not a 500). Undefined when the deadline passed first.
 */
async function withinDeadline<T> (work: Promise<T>, deadlineAt: number): Promise<T | undefined> {
  try {
    return await withDeadline(work, deadlineAt, () => {})
  } catch (err) {
    if (err instanceof DeadlineError || isPoolTimeout(err)) return undefined
    if (isConnectionError(err)) throw new LedgerUnavailableError(`PostgreSQL unavailable: ${(err as Error).message}`)
    throw err
  }
}
