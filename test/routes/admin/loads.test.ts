import t from 'tap'
import { adminHeaders, build, uniq } from '../../helper.js'
import { auditLedger } from '../../../src/audit.js'
import { adminCall, underPressureRetries } from './helper.js'

t.test('loads and unloads', async (t) => {
  const app = await build(t)
  const newUser = async (): Promise<string> => (await adminCall(app, 'POST', '/v1/users', {})).json().token
  const move = async (direction: 'loads' | 'unloads', user: string, payload: unknown, key: string | null = uniq('key'), headers: Record<string, string> = adminHeaders) =>
    await adminCall(app, 'POST', `/v1/users/${user}/${direction}`, payload, key === null ? headers : { ...headers, 'idempotency-key': key })
  const balances = async (user: string) => (await adminCall(app, 'GET', `/v1/users/${user}/balances`)).json()
  // The relay publishes ledger.<code> from each transfer row (DESIGN §7): a movement's event is its transfer.
  const events = async (user: string, routingKey: string): Promise<number> =>
    Number((await app.db.query("SELECT count(*) FROM transfers WHERE 'ledger.' || code = $1 AND user_token = $2", [routingKey, user])).rows[0].count)

  await t.test('a load credits the account and answers its balances as decimal strings', async (t) => {
    const user = await newUser()
    const res = await move('loads', user, { amount: 12.5, currency_code: 'USD' })
    t.equal(res.statusCode, 201)
    const body = res.json()
    t.match(body, {
      token: /^[0-9a-f-]{36}$/,
      amount: '12.50',
      currency_code: 'USD',
      balances: { USD: { currency_code: 'USD', available_balance: '12.50', ledger_balance: '12.50', pending_holds: '0.00' } }
    })
    t.same(Object.keys(body.balances), ['USD'], 'the balances of that currency only')
    t.equal(await events(user, 'ledger.load'), 1, 'one load transfer, published as ledger.load')
    const jpy = await move('loads', user, { amount: '500', currency_code: 'JPY' })
    t.match(jpy.json(), { amount: '500', balances: { JPY: { available_balance: '500' } } }, 'a currency without decimals')
    const bhd = await move('loads', user, { amount: '1.005', currency_code: 'BHD' })
    t.match(bhd.json(), { amount: '1.005', balances: { BHD: { available_balance: '1.005' } } }, 'a currency with three decimals')
  })

  await t.test('the same key with an equal body replays the first answer; money moves once', async (t) => {
    const user = await newUser()
    const key = uniq('key')
    const first = await move('loads', user, { amount: 12.5, currency_code: 'USD' }, key)
    t.equal(first.statusCode, 201)
    for (const amount of [12.5, '12.50', '12.500', 12.50]) {
      const again = await move('loads', user, { amount, currency_code: 'USD' }, key)
      t.equal(again.statusCode, 201, `amount ${JSON.stringify(amount)} is the same value`)
      t.equal(again.body, first.body, 'byte for byte')
    }
    t.equal((await balances(user)).USD.ledger_balance, '12.50')
    t.equal(await events(user, 'ledger.load'), 1)

    const other = await move('loads', user, { amount: '12.51', currency_code: 'USD' }, key)
    t.equal(other.statusCode, 422)
    t.match(other.json(), { statusCode: 422, error: 'Unprocessable Entity', code: 'IDEMPOTENCY_KEY_REUSED' })
    t.equal((await move('loads', user, { amount: '12.50', currency_code: 'EUR' }, key)).statusCode, 422, 'another currency is another body')
    t.equal((await balances(user)).USD.ledger_balance, '12.50')

    const unload = await move('unloads', user, { amount: 2, currency_code: 'USD' }, key)
    t.equal(unload.statusCode, 201, 'the key is scoped to the route')
    const otherUser = await newUser()
    t.equal((await move('loads', otherUser, { amount: 1, currency_code: 'USD' }, key)).statusCode, 201, 'and to the user')
  })

  await t.test('concurrent requests with the same key move the money once and all get the first answer', async (t) => {
    const user = await newUser()
    const key = uniq('key')
    const answers = await Promise.all(Array.from({ length: 20 }, async () => await move('loads', user, { amount: '3.00', currency_code: 'USD' }, key)))
    t.same(new Set(answers.map((a) => a.statusCode)), new Set([201]))
    t.equal(new Set(answers.map((a) => a.body)).size, 1, 'one body')
    t.equal((await balances(user)).USD.ledger_balance, '3.00')
  })

  await t.test('an unload beyond the available balance is a 409 INSUFFICIENT_FUNDS, replayed for its key', async (t) => {
    const user = await newUser()
    await move('loads', user, { amount: 10, currency_code: 'USD' })
    const key = uniq('key')
    const refused = await move('unloads', user, { amount: '10.01', currency_code: 'USD' }, key)
    t.equal(refused.statusCode, 409)
    t.same(refused.json(), { statusCode: 409, error: 'Conflict', message: 'available balance is lower than the amount', code: 'INSUFFICIENT_FUNDS' })
    await move('loads', user, { amount: 100, currency_code: 'USD' })
    const replay = await move('unloads', user, { amount: 10.01, currency_code: 'USD' }, key)
    t.equal(replay.statusCode, 409, 'the first answer, even though funds now suffice')
    t.equal(replay.body, refused.body)
    const ok = await move('unloads', user, { amount: 110, currency_code: 'USD' })
    t.equal(ok.statusCode, 201)
    t.match(ok.json().balances.USD, { available_balance: '0.00', ledger_balance: '0.00' })
    t.equal(await events(user, 'ledger.unload'), 1)
    t.equal((await move('unloads', user, { amount: 1, currency_code: 'EUR' })).statusCode, 409, 'no EUR at all')
  })

  await t.test('validation: 400 naming the field', async (t) => {
    const user = await newUser()
    const cases: Array<[unknown, RegExp]> = [
      [{ amount: '12.501', currency_code: 'USD' }, /^body\/amount has more decimals than the currency allows$/],
      [{ amount: 1.5, currency_code: 'JPY' }, /^body\/amount has more decimals/],
      [{ amount: 0, currency_code: 'USD' }, /^body\/amount must be greater than zero$/],
      [{ amount: '0.00', currency_code: 'USD' }, /^body\/amount must be greater than zero$/],
      [{ amount: -1, currency_code: 'USD' }, /^body\/amount must not be negative$/],
      [{ amount: '1e3', currency_code: 'USD' }, /^body\/amount/],
      [{ amount: 'ten', currency_code: 'USD' }, /^body\/amount/],
      [{ amount: '1000000000000', currency_code: 'USD' }, /^body\/amount is too large$/],
      [{ amount: { value: 1 }, currency_code: 'USD' }, /body\/amount/],
      [{ currency_code: 'USD' }, /amount/],
      [{ amount: 1, currency_code: 'XYZ' }, /^body\/currency_code must be a known ISO 4217 currency code$/],
      [{ amount: 1, currency_code: 'usd' }, /body\/currency_code/],
      [{ amount: 1 }, /currency_code/]
    ]
    for (const [payload, message] of cases) {
      for (const direction of ['loads', 'unloads'] as const) {
        const res = await move(direction, user, payload)
        t.equal(res.statusCode, 400, `${direction} ${JSON.stringify(payload)}`)
        t.match(res.json(), { statusCode: 400, error: 'Bad Request', message })
      }
    }
    const noKey = await move('loads', user, { amount: 1, currency_code: 'USD' }, null)
    t.equal(noKey.statusCode, 400)
    t.match(noKey.json(), { message: /idempotency-key/ })
    t.same(await balances(user), {}, 'nothing moved')
  })

  await t.test('unknown user 404 (and the key is not used up), CLOSED user gets no load, no bearer 401', async (t) => {
    const nobody = uniq('nobody')
    const key = uniq('key')
    t.equal((await move('loads', nobody, { amount: 1, currency_code: 'USD' }, key)).statusCode, 404)
    t.equal((await move('unloads', nobody, { amount: 1, currency_code: 'USD' }, key)).statusCode, 404)
    const user = await newUser()
    await move('loads', user, { amount: 5, currency_code: 'USD' })
    await adminCall(app, 'PATCH', `/v1/users/${user}`, { status: 'CLOSED' })
    t.match((await move('loads', user, { amount: 1, currency_code: 'USD' })).json(), { statusCode: 409, code: 'CLOSED_ACCOUNT' })
    t.equal((await move('unloads', user, { amount: 5, currency_code: 'USD' })).statusCode, 201, 'a closed account can still be paid out')
    t.equal((await move('loads', user, { amount: 1, currency_code: 'USD' }, uniq('k'), {})).statusCode, 401)
  })

  await t.test('200 concurrent unloads of 1.00 against 50.00: exactly 50 succeed and the balance is exactly zero', async (t) => {
    const user = await newUser()
    t.equal((await move('loads', user, { amount: '50.00', currency_code: 'USD' })).statusCode, 201)
    const started = Date.now()
    const answers = await Promise.all(Array.from({ length: 200 }, async () => await move('unloads', user, { amount: '1.00', currency_code: 'USD' })))
    const ms = Date.now() - started
    const count = (status: number): number => answers.filter((a) => a.statusCode === status).length
    t.equal(count(201), 50, '50 unloads succeed')
    t.equal(count(409), 150, '150 are refused')
    t.ok(answers.filter((a) => a.statusCode === 409).every((a) => a.json().code === 'INSUFFICIENT_FUNDS'))
    t.same((await balances(user)).USD, { currency_code: 'USD', available_balance: '0.00', ledger_balance: '0.00', pending_holds: '0.00' })
    t.equal(await events(user, 'ledger.unload'), 50)
    t.same((await auditLedger(app.db, { userTokens: [user] })).violations, [])
    t.comment(`200 concurrent unloads in ${ms} ms: ${count(201)} × 201, ${count(409)} × 409 (under-pressure retries in this file: ${underPressureRetries})`)
  })
})
