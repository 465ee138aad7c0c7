import t from 'tap'
import { build, uniq } from '../../helper.js'
import { adminCall } from './helper.js'

t.test('velocity controls and auth controls', async (t) => {
  const app = await build(t)
  const call = async (method: 'GET' | 'POST' | 'DELETE' | 'PATCH', url: string, payload?: unknown, headers?: Record<string, string>) =>
    await adminCall(app, method, url, payload, headers)
  const cardholder = async (): Promise<{ user: string, card: string }> => {
    const user = (await call('POST', '/v1/users', {})).json().token as string
    const card = (await call('POST', '/v1/cards', { user_token: user })).json().token as string
    return { user, card }
  }
  // Program-wide controls would apply to every other test file on this database: they are created inactive and
  // scoped to a merchant nobody else uses.
  const programMid = uniq('mid')
  const programTokens: string[] = []
  t.teardown(async () => {
    await app.db.query('UPDATE velocity_controls SET active = false WHERE token = ANY($1)', [programTokens])
    await app.db.query('UPDATE auth_controls SET active = false WHERE token = ANY($1)', [programTokens])
  })

  await t.test('POST /v1/velocitycontrols creates a control with amount_limit as a decimal string', async (t) => {
    const { user, card } = await cardholder()
    const token = uniq('vc')
    const res = await call('POST', '/v1/velocitycontrols', {
      token, name: 'daily cap', association: { user_token: user }, currency_code: 'USD', amount_limit: 100.5, usage_limit: 3,
      velocity_window: 'DAY', merchant_scope: { mcc: '5411' }
    })
    t.equal(res.statusCode, 201)
    t.match(res.json(), {
      token, name: 'daily cap', association: { user_token: user }, currency_code: 'USD', amount_limit: '100.50', usage_limit: 3,
      velocity_window: 'DAY', merchant_scope: { mcc: '5411' }, active: true
    })
    t.ok(!Number.isNaN(Date.parse(res.json().created_time)))

    const onCard = await call('POST', '/v1/velocitycontrols', { association: { card_token: card }, currency_code: 'JPY', amount_limit: '5000', velocity_window: 'TRANSACTION' })
    t.equal(onCard.statusCode, 201)
    t.match(onCard.json(), { token: /^[A-Za-z0-9_-]{36}$/, association: { card_token: card }, amount_limit: '5000', merchant_scope: {} })
    t.notOk('usage_limit' in onCard.json(), 'an absent limit is omitted')

    const usage = await call('POST', '/v1/velocitycontrols', { association: { user_token: user, card_token: card }, currency_code: 'USD', usage_limit: 10, velocity_window: 'LIFETIME' })
    t.equal(usage.statusCode, 201)
    t.notOk('amount_limit' in usage.json())

    const program = await call('POST', '/v1/velocitycontrols', { association: {}, currency_code: 'USD', usage_limit: 1000, velocity_window: 'MONTH', merchant_scope: { mid: programMid }, active: false })
    t.equal(program.statusCode, 201)
    programTokens.push(program.json().token)
    t.same(program.json().association, {}, 'neither token: program-wide')
    t.equal(program.json().active, false)

    const list = await call('GET', `/v1/velocitycontrols?user_token=${user}`)
    t.equal(list.statusCode, 200)
    t.same(list.json().data.map((c: { token: string }) => c.token).sort(), [token, onCard.json().token, usage.json().token].sort(),
      "the user's controls and its cards' controls")
    t.same((await call('GET', `/v1/velocitycontrols?card_token=${card}`)).json().data.map((c: { token: string }) => c.token).sort(),
      [onCard.json().token, usage.json().token].sort())
    t.same((await call('GET', `/v1/velocitycontrols?user_token=${uniq('nobody')}`)).json(), { data: [] })
    t.ok((await call('GET', '/v1/velocitycontrols')).json().data.some((c: { token: string }) => c.token === program.json().token), 'unfiltered lists program-wide ones')

    const deleted = await call('DELETE', `/v1/velocitycontrols/${token}`)
    t.equal(deleted.statusCode, 200)
    t.match(deleted.json(), { token, active: false, amount_limit: '100.50' })
    t.equal((await call('GET', `/v1/velocitycontrols?user_token=${user}`)).json().data.find((c: { token: string }) => c.token === token).active, false)
    t.equal((await call('DELETE', `/v1/velocitycontrols/${token}`)).statusCode, 200, 'deactivating twice is fine')
    t.equal((await call('DELETE', `/v1/velocitycontrols/${uniq('novc')}`)).statusCode, 404)
  })

  await t.test('velocity control errors', async (t) => {
    const { user, card } = await cardholder()
    const other = await cardholder()
    const base = { association: { user_token: user }, currency_code: 'USD', amount_limit: '10', velocity_window: 'WEEK' }
    const cases: Array<[unknown, number, RegExp]> = [
      [{ ...base, velocity_window: 'YEAR' }, 400, /body\/velocity_window/],
      [{ ...base, velocity_window: undefined }, 400, /velocity_window/],
      [{ ...base, currency_code: 'XYZ' }, 400, /body\/currency_code/],
      [{ ...base, currency_code: undefined }, 400, /currency_code/],
      [{ ...base, amount_limit: '10.001' }, 400, /^body\/amount_limit has more decimals than the currency allows$/],
      [{ ...base, amount_limit: -1 }, 400, /body\/amount_limit/],
      [{ ...base, amount_limit: undefined }, 400, /amount_limit or usage_limit/],
      [{ ...base, usage_limit: -1 }, 400, /body\/usage_limit/],
      [{ ...base, usage_limit: 1.5 }, 400, /body\/usage_limit/],
      [{ ...base, token: 'x'.repeat(37) }, 400, /body\/token/],
      [{ ...base, merchant_scope: { mcc: '54' } }, 400, /body\/merchant_scope\/mcc/],
      [{ ...base, association: undefined }, 400, /association/],
      [{ ...base, association: { user_token: uniq('nobody') } }, 404, /user/],
      [{ ...base, association: { card_token: uniq('nocard') } }, 404, /card/],
      [{ ...base, association: { user_token: user, card_token: other.card } }, 400, /body\/association\/card_token/]
    ]
    for (const [payload, status, message] of cases) {
      const res = await call('POST', '/v1/velocitycontrols', payload)
      t.equal(res.statusCode, status, JSON.stringify(payload))
      t.match(res.json(), { statusCode: status, message })
    }
    const token = uniq('vc')
    t.equal((await call('POST', '/v1/velocitycontrols', { ...base, token, association: { card_token: card } })).statusCode, 201)
    t.match((await call('POST', '/v1/velocitycontrols', { ...base, token })).json(), { statusCode: 409, code: 'DUPLICATE_TOKEN' })
    t.equal((await call('POST', '/v1/velocitycontrols', base, {})).statusCode, 401)
    t.equal((await call('GET', '/v1/velocitycontrols', undefined, {})).statusCode, 401)
    t.equal((await call('DELETE', `/v1/velocitycontrols/${token}`, undefined, {})).statusCode, 401)
  })

  await t.test('POST /v1/authcontrols blocks a merchant scope; an empty scope is a 400', async (t) => {
    const { user, card } = await cardholder()
    const res = await call('POST', '/v1/authcontrols', { name: 'no groceries', association: { user_token: user }, merchant_scope: { mcc: '5411' } })
    t.equal(res.statusCode, 201)
    t.match(res.json(), { token: /^[A-Za-z0-9_-]{1,36}$/, name: 'no groceries', association: { user_token: user }, merchant_scope: { mcc: '5411' }, active: true })
    const token = uniq('ac')
    const onCard = await call('POST', '/v1/authcontrols', { token, association: { card_token: card }, merchant_scope: { mcc: '7995', mid: 'casino-1' } })
    t.equal(onCard.statusCode, 201)
    t.same(onCard.json().merchant_scope, { mcc: '7995', mid: 'casino-1' })
    const program = await call('POST', '/v1/authcontrols', { association: {}, merchant_scope: { mid: programMid }, active: false })
    t.equal(program.statusCode, 201)
    programTokens.push(program.json().token)
    t.same(program.json().association, {})

    t.same((await call('GET', `/v1/authcontrols?user_token=${user}`)).json().data.map((c: { token: string }) => c.token).sort(), [res.json().token, token].sort())
    t.same((await call('GET', `/v1/authcontrols?card_token=${card}`)).json().data.map((c: { token: string }) => c.token), [token])

    const deleted = await call('DELETE', `/v1/authcontrols/${token}`)
    t.equal(deleted.statusCode, 200)
    t.match(deleted.json(), { token, active: false, merchant_scope: { mcc: '7995', mid: 'casino-1' } })
    t.equal((await call('DELETE', `/v1/authcontrols/${uniq('noac')}`)).statusCode, 404)

    const cases: Array<[unknown, number, RegExp]> = [
      [{ association: { user_token: user }, merchant_scope: {} }, 400, /body\/merchant_scope/],
      [{ association: { user_token: user } }, 400, /merchant_scope/],
      [{ association: { user_token: user }, merchant_scope: { mcc: 'abcd' } }, 400, /body\/merchant_scope\/mcc/],
      [{ association: { user_token: user }, merchant_scope: { mid: '' } }, 400, /body\/merchant_scope\/mid/],
      [{ merchant_scope: { mcc: '5411' } }, 400, /association/],
      [{ association: { user_token: uniq('nobody') }, merchant_scope: { mcc: '5411' } }, 404, /user/],
      [{ association: { card_token: uniq('nocard') }, merchant_scope: { mcc: '5411' } }, 404, /card/],
      [{ token, association: { user_token: user }, merchant_scope: { mcc: '5411' } }, 409, /already exists/]
    ]
    for (const [payload, status, message] of cases) {
      const r = await call('POST', '/v1/authcontrols', payload)
      t.equal(r.statusCode, status, JSON.stringify(payload))
      t.match(r.json(), { statusCode: status, message })
    }
    t.equal((await call('POST', '/v1/authcontrols', { association: {}, merchant_scope: { mcc: '5411' } }, {})).statusCode, 401)
    t.equal((await call('GET', '/v1/authcontrols', undefined, {})).statusCode, 401)
  })

  await t.test('a control write invalidates the cached controls of its scope', async (t) => {
    const { user, card } = await cardholder()
    const seen: unknown[] = []
    const original = app.invalidateContext
    app.invalidateContext = async (what) => { seen.push(what); await original(what) }
    t.teardown(() => { app.invalidateContext = original })
    const created = await call('POST', '/v1/authcontrols', { association: { card_token: card }, merchant_scope: { mcc: '5999' } })
    await call('DELETE', `/v1/authcontrols/${created.json().token}`)
    const program = await call('POST', '/v1/velocitycontrols', { association: {}, currency_code: 'USD', usage_limit: 1, velocity_window: 'DAY', merchant_scope: { mid: programMid }, active: false })
    programTokens.push(program.json().token)
    await call('PATCH', `/v1/cards/${card}`, { state: 'SUSPENDED' })
    await call('PATCH', `/v1/users/${user}`, { status: 'SUSPENDED' })
    t.same(seen, [{ controls: [user] }, { controls: [user] }, { controls: [''] }, { cards: [card] }, { users: [user] }])
  })
})
