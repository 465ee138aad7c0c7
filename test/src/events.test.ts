import t from 'tap'
import { eventsOf, type DecisionRow, type TransferRow } from '../../src/events.js'

const created_at = '2024-05-01T10:00:00.000Z'
const transfer = (row: Partial<TransferRow>): TransferRow => ({
  id: 'x', code: 'noop', amount: '0', released: '0', hold_jit_token: null, user_token: 'U', currency_code: 'USD', jit_token: null,
  reference: null, created_at, ...row
})
const decision = (row: Partial<DecisionRow>): DecisionRow => ({
  jit_token: 'J', method: 'pgfs.authorization', user_token: 'U', card_token: 'C', currency_code: 'USD', result: 'approved',
  decline_reason: null, status_code: 200, hold_minor: null, hold_of: null, overdrawn: false, request: { token: 'T' },
  response: '{"jit_funding":{"token":"J","amount":1.5}}', created_at, ...row
})
const one = (events: ReturnType<typeof eventsOf>): [string, Record<string, unknown>] => {
  if (events.length !== 1) throw new Error(`${events.length} events`)
  return [events[0].routingKey, events[0].payload]
}

t.test('an approved hold: its jit event and ledger.hold.created, ids stable per row and routing key', async (t) => {
  const events = eventsOf({ source: 'decision', row: decision({ hold_minor: '150' }) })
  t.same(events.map((e) => [e.routingKey, e.messageId]), [
    ['jit.approved.pgfs.authorization', 'decision:J:jit.approved.pgfs.authorization'],
    ['ledger.hold.created', 'decision:J:ledger.hold.created']
  ])
  t.same(events[0].payload, {
    jit_token: 'J', method: 'pgfs.authorization', result: 'approved', decline_reason: null, user_token: 'U', card_token: 'C',
    request: { token: 'T' }, response: { jit_funding: { token: 'J', amount: 1.5 } }, overdrawn: false,
    event_id: 'decision:J:jit.approved.pgfs.authorization', created_at
  })
  t.match(events[1].payload, { jit_token: 'J', user_token: 'U', amount_minor: 150, currency_code: 'USD', forced: false })
  t.same(eventsOf({ source: 'decision', row: decision({ hold_minor: '150' }) }), events, 'the same row, the same messages')
})

t.test('decisions: an incremental, a decline, a recorded informative message', async (t) => {
  const incremental = eventsOf({ source: 'decision', row: decision({ jit_token: 'J2', hold_minor: 50, hold_of: 'J' }) })
  t.match(incremental[1], { routingKey: 'ledger.hold.increased', payload: { hold_jit_token: 'J', jit_token: 'J2', amount_minor: 50 } })
  t.same(eventsOf({ source: 'decision', row: decision({ status_code: 402, result: 'declined', decline_reason: 'INSUFFICIENT_FUNDS' }) })
    .map((e) => e.routingKey), ['jit.declined.pgfs.authorization'])
  // The overdraft of an informative message is published from its `overdrawn` transfer, not twice.
  t.same(eventsOf({ source: 'decision', row: decision({ method: 'pgfs.authorization.standin', result: 'recorded', overdrawn: true }) })
    .map((e) => e.routingKey), ['jit.approved.pgfs.authorization.standin'])
})

t.test('transfers: each code its event, or none', async (t) => {
  t.same(one(eventsOf({ source: 'transfer', row: transfer({ id: 'J:hold', code: 'hold.created', amount: '200', hold_jit_token: 'J', jit_token: 'J', forced: true }) })),
    ['ledger.hold.created', { jit_token: 'J', user_token: 'U', amount_minor: 200, currency_code: 'USD', forced: true, event_id: 'transfer:J:hold:ledger.hold.created', created_at }])
  t.match(one(eventsOf({ source: 'transfer', row: transfer({ code: 'hold.increased', amount: 20, hold_jit_token: 'J', jit_token: 'J2' }) })),
    ['ledger.hold.increased', { hold_jit_token: 'J', jit_token: 'J2', amount_minor: 20 }])
  t.match(one(eventsOf({ source: 'transfer', row: transfer({ code: 'hold.posted', amount: '180', released: '200', hold_jit_token: 'J', jit_token: 'J3' }) })),
    ['ledger.hold.posted', { hold_jit_token: 'J', jit_token: 'J3', held_minor: 200, posted_minor: 180 }])
  for (const code of ['hold.released', 'hold.voided']) {
    t.match(one(eventsOf({ source: 'transfer', row: transfer({ code, released: '30', hold_jit_token: 'J', jit_token: 'J4' }) })),
      [`ledger.${code}`, { hold_jit_token: 'J', jit_token: 'J4', released_minor: 30 }])
  }
  t.match(one(eventsOf({ source: 'transfer', row: transfer({ code: 'hold.expired', released: '70', hold_jit_token: 'J', jit_token: 'J' }) })),
    ['ledger.hold.expired', { hold_jit_token: 'J', user_token: 'U', released_minor: 70 }])
  for (const code of ['load', 'unload']) {
    t.same(one(eventsOf({ source: 'transfer', row: transfer({ id: 'admin:k', code, amount: '500', reference: 'R' }) })),
      [`ledger.${code}`, { user_token: 'U', currency_code: 'USD', amount_minor: 500, token: 'R', effect_key: 'admin:k', event_id: `transfer:admin:k:ledger.${code}`, created_at }])
  }
  t.match(one(eventsOf({ source: 'transfer', row: transfer({ id: 'J:hold:overdrawn', code: 'overdrawn', reference: '-1500', jit_token: 'J' }) })),
    ['ledger.overdrawn', { user_token: 'U', currency_code: 'USD', available_minor: -1500, jit_token: 'J', effect_key: 'J:hold' }])
  for (const code of ['debit', 'credit', 'forced_debit', 'post.unmatched', 'void.debit', 'noop', 'superseded']) {
    t.same(eventsOf({ source: 'transfer', row: transfer({ code, amount: '10' }) }), [], `${code}: no event`)
  }
})
