import t from 'tap'
import { adminHeaders, build, uniq } from '../../helper.js'
import { adminCall } from './helper.js'

t.test('cards', async (t) => {
  const app = await build(t)
  const call = async (method: 'GET' | 'POST' | 'PATCH', url: string, payload?: unknown, headers: Record<string, string> = adminHeaders) =>
    await adminCall(app, method, url, payload, headers)
  const newUser = async (): Promise<string> => (await call('POST', '/v1/users', {})).json().token

  await t.test('POST creates an ACTIVE card of an existing user', async (t) => {
    const user = await newUser()
    const token = uniq('card')
    const res = await call('POST', '/v1/cards', { token, user_token: user })
    t.equal(res.statusCode, 201)
    t.match(res.json(), { token, user_token: user, state: 'ACTIVE' })
    t.ok(!Number.isNaN(Date.parse(res.json().created_time)))
    t.same((await call('GET', `/v1/cards/${token}`)).json(), res.json())

    const generated = await call('POST', '/v1/cards', { user_token: user, state: 'SUSPENDED' })
    t.equal(generated.statusCode, 201)
    t.match(generated.json(), { token: /^[A-Za-z0-9_-]{36}$/, state: 'SUSPENDED' })
  })

  await t.test('errors: unknown user 404, duplicate 409, invalid fields 400, no token 401', async (t) => {
    const user = await newUser()
    const unknown = await call('POST', '/v1/cards', { user_token: uniq('nobody') })
    t.equal(unknown.statusCode, 404)
    t.match(unknown.json(), { statusCode: 404, error: 'Not Found', message: /user/ })

    const token = uniq('card')
    t.equal((await call('POST', '/v1/cards', { token, user_token: user })).statusCode, 201)
    t.match((await call('POST', '/v1/cards', { token, user_token: user })).json(), { statusCode: 409, code: 'DUPLICATE_TOKEN' })

    t.match((await call('POST', '/v1/cards', {})).json(), { statusCode: 400, message: /user_token/ })
    t.match((await call('POST', '/v1/cards', { user_token: user, token: 'no spaces' })).json(), { statusCode: 400, message: /body\/token/ })
    t.match((await call('POST', '/v1/cards', { user_token: user, state: 'TERMINATED' })).json(), { statusCode: 400, message: /body\/state/ })
    t.equal((await call('POST', '/v1/cards', { user_token: user }, {})).statusCode, 401)
    t.equal((await call('GET', `/v1/cards/${token}`, undefined, {})).statusCode, 401)
    t.equal((await call('GET', `/v1/cards/${uniq('nocard')}`)).statusCode, 404)
  })

  await t.test('a CLOSED user gets no new card', async (t) => {
    const user = await newUser()
    await call('PATCH', `/v1/users/${user}`, { status: 'CLOSED' })
    t.match((await call('POST', '/v1/cards', { user_token: user })).json(), { statusCode: 409, code: 'USER_CLOSED' })
  })

  await t.test('PATCH follows the state machine; TERMINATED is final', async (t) => {
    const user = await newUser()
    const token = uniq('card')
    await call('POST', '/v1/cards', { token, user_token: user })
    for (const state of ['SUSPENDED', 'ACTIVE', 'SUSPENDED', 'TERMINATED']) {
      const res = await call('PATCH', `/v1/cards/${token}`, { state })
      t.equal(res.statusCode, 200, `→ ${state}`)
      t.equal(res.json().state, state)
    }
    t.equal((await call('PATCH', `/v1/cards/${token}`, { state: 'TERMINATED' })).statusCode, 200, 'terminating again changes nothing')
    for (const state of ['ACTIVE', 'SUSPENDED']) {
      const res = await call('PATCH', `/v1/cards/${token}`, { state })
      t.equal(res.statusCode, 409, `TERMINATED → ${state}`)
      t.match(res.json(), { statusCode: 409, error: 'Conflict', code: 'INVALID_TRANSITION' })
    }
    t.equal((await call('GET', `/v1/cards/${token}`)).json().state, 'TERMINATED')
    t.match((await call('PATCH', `/v1/cards/${token}`, { state: 'LOST' })).json(), { statusCode: 400, message: /body\/state/ })
    t.equal((await call('PATCH', `/v1/cards/${uniq('nocard')}`, { state: 'ACTIVE' })).statusCode, 404)
    t.equal((await call('PATCH', `/v1/cards/${token}`, { state: 'ACTIVE' }, {})).statusCode, 401)
  })
})
