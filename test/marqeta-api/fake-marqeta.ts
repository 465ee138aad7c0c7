import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import { request as httpRequest } from 'undici'

/**
 * A small stand-in for Marqeta's Core API (sandbox), built from the documented shapes: Basic auth with the application
 * and admin access tokens, lists paginated with count/start_index/is_more/data, errors as
 * `{"error_code", "error_message"}` whose first three digits are the HTTP status (https://www.marqeta.com/docs/core-api/errors;
 * the last three digits here are the fake's own), webhook credentials masked in responses, and a simulated
 * authorization that sends a real JIT funding request to the registered program gateway.
 */

export interface Fault { status?: number, body?: unknown, headers?: Record<string, string>, delayMs?: number, times?: number }
export interface Call { method: string, path: string, body?: unknown }

type Row = Record<string, any>

const MASK = '********'
const error = (reply: FastifyReply, status: number, code: string, message: string): FastifyReply =>
  reply.code(status).send({ error_code: code, error_message: message })

/** Marqeta's Basic-auth password rule (program gateway funding sources and webhooks). */
const strongPassword = (p: unknown): boolean => typeof p === 'string' && p.length >= 20 && p.length <= 50 &&
  /[0-9]/.test(p) && /[a-z]/.test(p) && /[A-Z]/.test(p) && /[^A-Za-z0-9]/.test(p)

export class FakeMarqeta {
  readonly users = new Map<string, Row>()
  readonly cards = new Map<string, Row>()
  readonly velocityControls = new Map<string, Row>()
  readonly authControls = new Map<string, Row>()
  readonly webhooks = new Map<string, Row>()
  readonly fundingSources = new Map<string, Row>()
  readonly transactions = new Map<string, Row>()
  readonly cardTransitions: Row[] = []
  readonly userTransitions: Row[] = []
  readonly calls: Call[] = []
  private readonly faults: Array<{ method: string, path: string, fault: Fault }> = []
  url = ''

  private constructor (private readonly app: FastifyInstance, readonly applicationToken: string, readonly adminAccessToken: string) {}

  static async start (opts: { applicationToken?: string, adminAccessToken?: string } = {}): Promise<FakeMarqeta> {
    const app = Fastify({ logger: false })
    const fake = new FakeMarqeta(app, opts.applicationToken ?? 'app-token-' + randomUUID(), opts.adminAccessToken ?? 'admin-token-' + randomUUID())
    fake.routes()
    await app.listen({ host: '127.0.0.1', port: 0 })
    const address = app.server.address()
    if (address === null || typeof address === 'string') throw new Error('no port')
    fake.url = `http://127.0.0.1:${address.port}/v3`
    return fake
  }

  /** The next `times` (default 1) calls of method + path (no query) answer with the fault instead. */
  fail (method: string, path: string, fault: Fault): void {
    this.faults.push({ method, path: `/v3${path}`, fault: { times: 1, ...fault } })
  }

  /** Calls that change something at Marqeta (every method but GET). */
  writes (): Call[] {
    return this.calls.filter((c) => c.method !== 'GET')
  }

  async close (): Promise<void> {
    await this.app.close()
  }

  addUser (user: Row): Row {
    const row: Row = { status: 'ACTIVE', active: true, metadata: {}, created_time: new Date().toISOString(), ...user }
    this.users.set(row.token, row)
    return row
  }

  addCard (card: Row): Row {
    const row: Row = { state: 'ACTIVE', card_product_token: 'cp-fake', last_four: '1234', created_time: new Date().toISOString(), ...card }
    this.cards.set(row.token, row)
    return row
  }

  addVelocityControl (control: Row): Row {
    const row: Row = { active: true, currency_code: 'USD', velocity_window: 'DAY', ...control }
    this.velocityControls.set(row.token, row)
    return row
  }

  addAuthControl (control: Row): Row {
    const row: Row = { active: true, ...control }
    this.authControls.set(row.token, row)
    return row
  }

  private routes (): void {
    const app = this.app
    app.addHook('onRequest', async (req, reply) => {
      const path = req.url.split('?')[0]
      this.calls.push({ method: req.method, path: path.replace(/^\/v3/, '') })
      const i = this.faults.findIndex((f) => f.method === req.method && f.path === path)
      if (i >= 0) {
        const { fault } = this.faults[i]
        fault.times = (fault.times ?? 1) - 1
        if (fault.times <= 0) this.faults.splice(i, 1)
        if (fault.delayMs !== undefined) await sleep(fault.delayMs)
        if (fault.status !== undefined) {
          return await reply.code(fault.status).headers(fault.headers ?? {}).send(fault.body ?? { error_code: `${fault.status}000`, error_message: 'injected fault' })
        }
      }
      const expected = `Basic ${Buffer.from(`${this.applicationToken}:${this.adminAccessToken}`).toString('base64')}`
      if (req.headers.authorization !== expected) return await error(reply, 401, '401001', 'Unauthorized: invalid application token or access token')
    })
    app.addHook('preHandler', async (req) => {
      if (req.body !== undefined) this.calls[this.calls.length - 1].body = req.body
    })

    const list = (req: FastifyRequest, rows: Row[]): Row => {
      const q = req.query as Record<string, string>
      const count = Math.max(1, Math.min(Number(q.count ?? 5), 100))
      const start = Math.max(0, Number(q.start_index ?? 0))
      const data = rows.slice(start, start + count)
      return { count: data.length, start_index: start, end_index: start + Math.max(data.length - 1, 0), is_more: start + count < rows.length, data }
    }
    const byUser = (rows: Row[], user: string | undefined): Row[] =>
      user === undefined ? rows : rows.filter((r) => (user === 'null' ? r.association?.user_token === undefined : r.association?.user_token === user))

    // https://www.marqeta.com/docs/core-api/users
    app.get('/v3/users', async (req) => list(req, [...this.users.values()]))
    app.get<{ Params: { token: string } }>('/v3/users/:token', async (req, reply) =>
      this.users.get(req.params.token) ?? await error(reply, 404, '404001', 'User not found'))

    // https://www.marqeta.com/docs/core-api/cards
    app.get<{ Params: { token: string } }>('/v3/cards/user/:token', async (req) =>
      list(req, [...this.cards.values()].filter((c) => c.user_token === req.params.token)))
    app.get<{ Params: { token: string } }>('/v3/cards/:token', async (req, reply) =>
      this.cards.get(req.params.token) ?? await error(reply, 404, '404002', 'Card not found'))

    // https://www.marqeta.com/docs/core-api/card-transitions/create
    app.post<{ Body: Row }>('/v3/cardtransitions', async (req, reply) => {
      const { card_token: cardToken, state, channel, reason_code: reasonCode } = req.body ?? {}
      if (cardToken === undefined || state === undefined || channel === undefined || reasonCode === undefined) {
        return await error(reply, 400, '400001', 'card_token, state, channel and reason_code are required')
      }
      const card = this.cards.get(cardToken)
      if (card === undefined) return await error(reply, 404, '404002', 'Card not found')
      if (card.state === 'TERMINATED') return await error(reply, 400, '400100', 'Card is terminated')
      card.state = state
      const transition = { token: req.body.token ?? randomUUID(), ...req.body, user_token: card.user_token, created_time: new Date().toISOString() }
      this.cardTransitions.push(transition)
      return await reply.code(201).send(transition)
    })
    app.get<{ Params: { token: string } }>('/v3/cardtransitions/card/:token', async (req) =>
      list(req, this.cardTransitions.filter((t) => t.card_token === req.params.token)))

    // https://www.marqeta.com/docs/core-api/user-transitions/create-user-transition
    app.post<{ Body: Row }>('/v3/usertransitions', async (req, reply) => {
      const { user_token: userToken, status, channel, reason_code: reasonCode } = req.body ?? {}
      if (userToken === undefined || status === undefined || channel === undefined || reasonCode === undefined) {
        return await error(reply, 400, '400001', 'user_token, status, channel and reason_code are required')
      }
      const user = this.users.get(userToken)
      if (user === undefined) return await error(reply, 404, '404001', 'User not found')
      user.status = status
      const transition = { token: req.body.token ?? randomUUID(), ...req.body, created_time: new Date().toISOString() }
      this.userTransitions.push(transition)
      return await reply.code(201).send(transition)
    })
    app.get<{ Params: { user_token: string } }>('/v3/usertransitions/user/:user_token', async (req) =>
      list(req, this.userTransitions.filter((t) => t.user_token === req.params.user_token)))

    // https://www.marqeta.com/docs/core-api/velocity-controls/list-velocity-controls
    app.get<{ Querystring: { user?: string } }>('/v3/velocitycontrols', async (req) => list(req, byUser([...this.velocityControls.values()], req.query.user)))
    // https://www.marqeta.com/docs/core-api/authorization-controls/list-authorization-controls
    app.get<{ Querystring: { user?: string } }>('/v3/authcontrols', async (req) => list(req, byUser([...this.authControls.values()], req.query.user)))

    // https://www.marqeta.com/docs/core-api/webhooks (credentials masked in every response)
    const masked = (w: Row): Row => ({ ...w, config: { ...w.config, basic_auth_username: MASK, basic_auth_password: MASK, ...(w.config.secret !== undefined ? { secret: MASK } : {}) } })
    app.get('/v3/webhooks', async (req) => list(req, [...this.webhooks.values()].map(masked)))
    app.post<{ Body: Row }>('/v3/webhooks', async (req, reply) => {
      const body = req.body ?? {}
      if (typeof body.name !== 'string' || typeof body.config?.url !== 'string' || !Array.isArray(body.events)) {
        return await error(reply, 400, '400001', 'name, events and config.url are required')
      }
      if (!strongPassword(body.config.basic_auth_password)) return await error(reply, 400, '400002', 'config.basic_auth_password does not meet the password rules')
      const token = body.token ?? randomUUID()
      if (this.webhooks.has(token)) return await error(reply, 409, '409001', 'A webhook with this token already exists')
      const row = { active: true, ...body, token, created_time: new Date().toISOString() }
      this.webhooks.set(token, row)
      return await reply.code(201).send(masked(row))
    })
    app.put<{ Params: { token: string }, Body: Row }>('/v3/webhooks/:token', async (req, reply) => {
      const current = this.webhooks.get(req.params.token)
      if (current === undefined) return await error(reply, 404, '404003', 'Webhook not found')
      if (req.body?.config?.basic_auth_password !== undefined && !strongPassword(req.body.config.basic_auth_password)) {
        return await error(reply, 400, '400002', 'config.basic_auth_password does not meet the password rules')
      }
      const row = { ...current, ...req.body, config: { ...current.config, ...req.body?.config }, token: current.token }
      this.webhooks.set(row.token, row)
      return masked(row)
    })

    // https://www.marqeta.com/docs/core-api/program-gateway-funding-sources
    app.post<{ Body: Row }>('/v3/fundingsources/programgateway', async (req, reply) => {
      const body = req.body ?? {}
      if (typeof body.name !== 'string' || typeof body.url !== 'string' || typeof body.basic_auth_username !== 'string') {
        return await error(reply, 400, '400001', 'name, url, basic_auth_username and basic_auth_password are required')
      }
      if (!strongPassword(body.basic_auth_password)) return await error(reply, 400, '400002', 'basic_auth_password does not meet the password rules')
      const token = body.token ?? randomUUID()
      if (this.fundingSources.has(token)) return await error(reply, 409, '409001', 'A funding source with this token already exists')
      const row = { active: false, ...body, token, account: '12345678', created_time: new Date().toISOString() }
      this.fundingSources.set(token, row)
      return await reply.code(201).send(row)
    })
    app.get<{ Params: { token: string } }>('/v3/fundingsources/programgateway/:token', async (req, reply) =>
      this.fundingSources.get(req.params.token) ?? await error(reply, 404, '404004', 'Funding source not found'))
    app.put<{ Params: { token: string }, Body: Row }>('/v3/fundingsources/programgateway/:token', async (req, reply) => {
      const current = this.fundingSources.get(req.params.token)
      if (current === undefined) return await error(reply, 404, '404004', 'Funding source not found')
      if (!strongPassword(req.body?.basic_auth_password)) return await error(reply, 400, '400002', 'basic_auth_password does not meet the password rules')
      const row = { ...current, ...req.body, token: current.token }
      this.fundingSources.set(row.token, row)
      return row
    })

    // https://www.marqeta.com/docs/core-api/simulations-card-transactions/authorizations/simulate-authorization-v2
    app.post<{ Body: Row }>('/v3/simulations/cardtransactions/authorization', async (req, reply) => {
      const { card_token: cardToken, amount } = req.body ?? {}
      if (typeof cardToken !== 'string' || typeof amount !== 'number') return await error(reply, 400, '400001', 'card_token and amount are required')
      const card = this.cards.get(cardToken)
      if (card === undefined) return await error(reply, 404, '404002', 'Card not found')
      const transaction = await this.authorizeThroughGateway(card, req.body)
      this.transactions.set(transaction.token, transaction)
      return await reply.code(201).send({ transaction })
    })
    // https://www.marqeta.com/docs/core-api/simulations-card-transactions/authorizations/simulate-authorization-clearing
    app.post<{ Body: Row }>('/v3/simulations/cardtransactions/authorization.clearing', async (req, reply) => {
      const preceding = this.transactions.get(req.body?.preceding_related_transaction_token)
      if (preceding === undefined) return await error(reply, 404, '404005', 'Transaction not found')
      const transaction = { token: randomUUID(), type: 'authorization.clearing', state: 'COMPLETION', amount: req.body.amount, preceding_related_transaction_token: preceding.token }
      this.transactions.set(transaction.token, transaction)
      return await reply.code(201).send({ transaction })
    })
  }

  /** Sends the JIT funding request to the active program gateway, as Marqeta would, and records its answer. */
  private async authorizeThroughGateway (card: Row, body: Row): Promise<Row> {
    const token = randomUUID()
    const jitToken = randomUUID()
    const transaction: Row = {
      token,
      type: 'authorization',
      state: 'PENDING',
      user_token: card.user_token,
      card_token: card.token,
      amount: body.amount,
      currency_code: body.currency_code ?? 'USD',
      card_acceptor: { mid: body.mid ?? '123456890', mcc: body.card_acceptor?.mcc ?? '5411', name: 'Fake Marqeta merchant' },
      gpa_order: { jit_funding: { token: jitToken, method: 'pgfs.authorization', user_token: card.user_token, amount: body.amount } }
    }
    const gateway = [...this.fundingSources.values()].find((f) => f.active === true)
    if (gateway === undefined) return { ...transaction, response: { code: '0000', memo: 'no program gateway: approved by the fake' } }
    const res = await httpRequest(gateway.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: `Basic ${Buffer.from(`${gateway.basic_auth_username}:${gateway.basic_auth_password}`).toString('base64')}`,
        ...(gateway.custom_header ?? {})
      },
      body: JSON.stringify(transaction),
      headersTimeout: 3000,
      bodyTimeout: 3000
    })
    const answer = await res.body.json() as Row
    const approved = res.statusCode === 200
    return {
      ...transaction,
      state: approved ? 'PENDING' : 'DECLINED',
      response: approved ? { code: '0000', memo: 'Approved or completed successfully' } : { code: '1016', memo: answer?.jit_funding?.decline_reason ?? `gateway answered ${res.statusCode}` },
      gateway_status: res.statusCode
    }
  }
}
