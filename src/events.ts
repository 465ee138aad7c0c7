/**
 * The events a committed ledger row implies (DESIGN §7): the relay reads `decisions` and `transfers` and publishes what
 * this module says, so the routing keys and payloads are the ones consumers have always read. Pure: a row in, its
 * messages out. Amounts are JSON numbers, as the ledger's events always were (pg hands bigints over as strings, so
 * both are accepted).
 */

type Minor = number | string
type Stamp = Date | string

/** A `decisions` row (the columns an event needs). */
export interface DecisionRow {
  jit_token: string
  method: string
  user_token: string | null
  card_token: string | null
  currency_code: string | null
  result: string
  decline_reason: string | null
  status_code: number
  hold_minor: Minor | null
  hold_of: string | null
  overdrawn: boolean
  request: unknown
  response: string
  created_at: Stamp
}

/** A `transfers` row; `forced` is the hold's flag, joined in for a `hold.created` (the row itself does not carry it). */
export interface TransferRow {
  id: string
  code: string
  amount: Minor
  released: Minor
  hold_jit_token: string | null
  user_token: string | null
  currency_code: string | null
  jit_token: string | null
  reference: string | null
  forced?: boolean | null
  created_at: Stamp
}

export type SourceRow =
  | { source: 'decision', row: DecisionRow }
  | { source: 'transfer', row: TransferRow }

export interface LedgerEvent {
  routingKey: string
  /** Stable per (row, routing key): a page published again after a crash carries the same ids, and consumers dedupe. */
  messageId: string
  createdAt: Date
  payload: Record<string, unknown>
}

const minor = (value: Minor | null | undefined): number | null => value === null || value === undefined ? null : Number(value)

function parsed (text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return text
  }
}

/** Every event of one row, in the order they are published. */
export function eventsOf (source: SourceRow): LedgerEvent[] {
  const key = source.source === 'decision' ? source.row.jit_token : source.row.id
  const createdAt = new Date(source.row.created_at)
  const bodies = source.source === 'decision' ? decisionEvents(source.row) : transferEvents(source.row)
  return bodies.map(([routingKey, body]) => {
    const messageId = `${source.source}:${key}:${routingKey}`
    return { routingKey, messageId, createdAt, payload: { ...body, event_id: messageId, created_at: createdAt.toISOString() } }
  })
}

type Body = [routingKey: string, payload: Record<string, unknown>]

function decisionEvents (d: DecisionRow): Body[] {
  // A recorded informative message was answered 200 and has always been published as approved.
  const events: Body[] = [[`jit.${d.status_code === 200 ? 'approved' : 'declined'}.${d.method}`, {
    jit_token: d.jit_token,
    method: d.method,
    result: d.result,
    decline_reason: d.decline_reason,
    user_token: d.user_token,
    card_token: d.card_token,
    request: d.request,
    response: parsed(d.response),
    overdrawn: d.overdrawn
  }]]
  if (d.hold_minor !== null && d.hold_of === null) {
    events.push(['ledger.hold.created', {
      jit_token: d.jit_token, user_token: d.user_token, amount_minor: minor(d.hold_minor), currency_code: d.currency_code, forced: false
    }])
  } else if (d.hold_minor !== null) {
    events.push(['ledger.hold.increased', { hold_jit_token: d.hold_of, jit_token: d.jit_token, amount_minor: minor(d.hold_minor) }])
  }
  // `overdrawn` is set only on an informative message, whose ledger_apply wrote an `overdrawn` transfer: that row
  // publishes ledger.overdrawn, once.
  return events
}

function transferEvents (t: TransferRow): Body[] {
  switch (t.code) {
    case 'hold.created':
      return [['ledger.hold.created', {
        jit_token: t.hold_jit_token ?? t.jit_token, user_token: t.user_token, amount_minor: minor(t.amount), currency_code: t.currency_code,
        forced: t.forced ?? false
      }]]
    case 'hold.increased':
      return [['ledger.hold.increased', { hold_jit_token: t.hold_jit_token, jit_token: t.jit_token, amount_minor: minor(t.amount) }]]
    case 'hold.posted':
      return [['ledger.hold.posted', {
        hold_jit_token: t.hold_jit_token, jit_token: t.jit_token, held_minor: minor(t.released), posted_minor: minor(t.amount)
      }]]
    case 'hold.released':
    case 'hold.voided':
      return [[`ledger.${t.code}`, { hold_jit_token: t.hold_jit_token, jit_token: t.jit_token, released_minor: minor(t.released) }]]
    case 'hold.expired':
      return [['ledger.hold.expired', { hold_jit_token: t.hold_jit_token, user_token: t.user_token, released_minor: minor(t.released) }]]
    case 'load':
    case 'unload':
      return [[`ledger.${t.code}`, {
        user_token: t.user_token, currency_code: t.currency_code, amount_minor: minor(t.amount), token: t.reference, effect_key: t.id
      }]]
    case 'overdrawn':
      // The balance after the movement is kept in `reference`; the transfer's id is its effect's key + ':overdrawn'.
      return [['ledger.overdrawn', {
        user_token: t.user_token,
        currency_code: t.currency_code,
        available_minor: minor(t.reference),
        jit_token: t.jit_token,
        effect_key: t.id.endsWith(':overdrawn') ? t.id.slice(0, -':overdrawn'.length) : t.id
      }]]
    default:
      // debit, credit, forced_debit, post.unmatched, void.debit, noop, superseded: no event of their own.
      return []
  }
}
