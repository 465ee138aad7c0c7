import t from 'tap'
import { build, uniq } from '../../helper.js'
import { applyLedger } from '../../../src/ledger/apply.js'
import { archiveCollection } from '../../../src/archive.js'
import type { Queryable } from '../../../src/db.js'
import { adminCall } from './helper.js'
import { decideHold } from '../../src/ledger/helper.js'

/** A decision row as the JIT path records it (test fixture: the JIT route has its own tests). */
async function decision (db: Queryable, d: { jit: string, user: string, card: string, result: string, status: number, amountMinor?: bigint, reason?: string, at: string, method?: string }): Promise<void> {
  const response = JSON.stringify({ jit_funding: { token: d.jit, method: d.method ?? 'pgfs.authorization', user_token: d.user, amount: 12.5, ...(d.reason === undefined ? {} : { decline_reason: d.reason }) } })
  await db.query(
    `INSERT INTO decisions (jit_token, method, user_token, card_token, transaction_token, result, decline_reason, status_code, response, amount_minor, currency_code, created_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'USD', $11)`,
    [d.jit, d.method ?? 'pgfs.authorization', d.user, d.card, uniq('txn'), d.result, d.reason ?? null, d.status, response, d.amountMinor?.toString() ?? null, d.at])
}

t.test('transactions', async (t) => {
  const app = await build(t)
  const call = async (url: string, headers?: Record<string, string>) => await adminCall(app, 'GET', url, undefined, headers)
  const user = (await adminCall(app, 'POST', '/v1/users', {})).json().token as string
  const card = (await adminCall(app, 'POST', '/v1/cards', { user_token: user })).json().token as string
  const card2 = (await adminCall(app, 'POST', '/v1/cards', { user_token: user })).json().token as string
  await adminCall(app, 'POST', `/v1/users/${user}/loads`, { amount: 100, currency_code: 'USD' }, { authorization: `Bearer ${app.config.ADMIN_TOKEN}`, 'idempotency-key': uniq('k') })

  const approved = uniq('jit-a')
  const declined = uniq('jit-d')
  const incremental = uniq('jit-i')
  await decision(app.db, { jit: declined, user, card: card2, result: 'declined', status: 402, reason: 'INSUFFICIENT_FUNDS', at: '2024-01-01T10:00:00Z' })
  await decision(app.db, { jit: approved, user, card, result: 'approved', status: 200, amountMinor: 12_50n, at: '2024-01-01T11:00:00Z' })
  await decision(app.db, { jit: incremental, user, card, result: 'approved', status: 200, amountMinor: 2_00n, at: '2024-01-01T12:00:00Z', method: 'pgfs.authorization.incremental' })
  const base = { user_token: user, card_token: card, currency_code: 'USD' }
  await applyLedger(app.db, { ...base, kind: 'hold', jit_token: approved, effect_key: `${approved}:hold`, amount_minor: 12_50n })
  await applyLedger(app.db, { ...base, kind: 'hold', jit_token: incremental, original_jit_token: approved, effect_key: `${incremental}:hold`, amount_minor: 2_00n })
  await applyLedger(app.db, { ...base, kind: 'release', jit_token: uniq('rev'), original_jit_token: approved, effect_key: uniq('rev'), amount_minor: 4_50n })

  await t.test('GET /v1/transactions lists decisions newest first, filtered and limited', async (t) => {
    const res = await call(`/v1/transactions?user_token=${user}`)
    t.equal(res.statusCode, 200)
    const data = res.json().data
    t.same(data.map((d: { jit_token: string }) => d.jit_token), [incremental, approved, declined])
    t.same(data[1], {
      jit_token: approved,
      method: 'pgfs.authorization',
      result: 'approved',
      decline_reason: null,
      status_code: 200,
      amount: '12.50',
      currency_code: 'USD',
      user_token: user,
      card_token: card,
      transaction_token: data[1].transaction_token,
      created_time: '2024-01-01T11:00:00.000Z',
      response: { jit_funding: { token: approved, method: 'pgfs.authorization', user_token: user, amount: 12.5 } }
    })
    t.match(data[2], { result: 'declined', decline_reason: 'INSUFFICIENT_FUNDS', status_code: 402, amount: null })
    t.same((await call(`/v1/transactions?user_token=${user}&limit=2`)).json().data.map((d: { jit_token: string }) => d.jit_token), [incremental, approved])
    t.same((await call(`/v1/transactions?card_token=${card2}`)).json().data.map((d: { jit_token: string }) => d.jit_token), [declined])
    t.same((await call(`/v1/transactions?user_token=${user}&card_token=${card2}`)).json().data.length, 1)
    t.same((await call(`/v1/transactions?user_token=${uniq('nobody')}`)).json(), { data: [] })
    t.ok((await call('/v1/transactions')).json().data.length <= 50, 'default limit 50')
    t.equal((await call('/v1/transactions?limit=500')).statusCode, 200)
    for (const limit of ['0', '501', 'ten', '-1']) {
      const bad = await call(`/v1/transactions?limit=${limit}`)
      t.equal(bad.statusCode, 400, `limit=${limit}`)
      t.match(bad.json(), { message: /querystring\/limit/ })
    }
    t.equal((await call('/v1/transactions', {})).statusCode, 401)
  })

  await t.test('GET /v1/transactions/:jit_token adds the hold and the archived messages', async (t) => {
    const messages = app.mongo.db!.collection(archiveCollection)
    await messages.insertMany([
      { jit_token: approved, routing_key: 'jit.approved.pgfs.authorization', received_at: new Date('2024-01-01T11:00:00Z'), payload: { n: 1 } },
      { jit_token: approved, routing_key: 'webhook.transaction', received_at: new Date('2024-01-01T11:05:00Z'), payload: { n: 2 } },
      { jit_token: uniq('other'), routing_key: 'webhook.transaction', received_at: new Date(), payload: { n: 3 } }
    ])
    const res = await call(`/v1/transactions/${approved}`)
    t.equal(res.statusCode, 200)
    const body = res.json()
    t.match(body, { jit_token: approved, result: 'approved', amount: '12.50', archive_status: 'available' })
    t.match(body.hold, { jit_token: approved, status: 'PENDING', amount: '14.50', remaining: '10.00', posted: '0.00', currency_code: 'USD', resolved_at: null })
    t.ok(Date.parse(body.hold.expires_at) > Date.now())
    // The relay archives the decision's own events too, whenever a worker gets to them: the fixtures are what must
    // be there, in order, and nothing of another token.
    type Archived = { jit_token: string, payload: { n?: number } }
    t.same(body.archived.filter((m: Archived) => m.payload?.n !== undefined).map((m: Archived) => m.payload), [{ n: 1 }, { n: 2 }], 'its own messages, oldest first')
    t.ok(body.archived.every((m: Archived) => m.jit_token === approved), 'only its own messages')
    t.type(body.archived[0]._id, 'string')

    const inc = (await call(`/v1/transactions/${incremental}`)).json()
    t.equal(inc.hold.jit_token, approved, "an incremental shows the original's hold")
    t.ok(inc.archived.every((m: Archived) => m.jit_token === incremental && m.payload?.n === undefined), "not the original's messages")

    const dec = (await call(`/v1/transactions/${declined}`)).json()
    t.equal(dec.hold, null, 'a decline has no hold')
    t.match(dec, { decline_reason: 'INSUFFICIENT_FUNDS', status_code: 402 })

    const decided = uniq('jit-h')
    const increased = uniq('jit-hi')
    await decideHold(app.db, { user, card, jit: decided, amountMinor: 3_00n })
    t.match((await call(`/v1/transactions/${decided}`)).json().hold, { jit_token: decided, status: 'PENDING', amount: '3.00', remaining: '3.00', posted: '0.00', currency_code: 'USD', resolved_at: null },
      'a hold that is still only its decision row')
    await decideHold(app.db, { user, card, jit: increased, amountMinor: 1_50n, original: decided })
    t.match((await call(`/v1/transactions/${increased}`)).json(), { jit_token: increased, amount: '1.50', hold: { jit_token: decided, amount: '4.50', remaining: '4.50' } },
      'an incremental decision shows the hold it added to')

    const unknown = await call(`/v1/transactions/${uniq('nojit')}`)
    t.equal(unknown.statusCode, 404)
    t.match(unknown.json(), { statusCode: 404, error: 'Not Found' })
    t.equal((await call(`/v1/transactions/${approved}`, {})).statusCode, 401)
  })
})

t.test('with MongoDB down the transaction still answers, archive marked unavailable', async (t) => {
  const app = await build(t, { MONGO_URL: 'mongodb://127.0.0.1:9/none' })
  const user = (await adminCall(app, 'POST', '/v1/users', {})).json().token as string
  const jit = uniq('jit-m')
  await decision(app.db, { jit, user, card: uniq('c'), result: 'approved', status: 200, amountMinor: 1_00n, at: new Date().toISOString() })
  const started = Date.now()
  const res = await adminCall(app, 'GET', `/v1/transactions/${jit}`)
  t.equal(res.statusCode, 200)
  t.match(res.json(), { jit_token: jit, hold: null, archived: [], archive_status: 'unavailable' })
  t.ok(Date.now() - started < 3000, 'without waiting for MongoDB')
})
