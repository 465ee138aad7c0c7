import type { MarqetaConfig } from './config.js'
import { marqetaCredentials } from './config.js'
import { MarqetaHttp, type MarqetaHttpOptions, type Query } from './http.js'
import { paginate, type Page } from './pagination.js'
import type {
  MarqetaAuthControl, MarqetaCard, MarqetaCardTransition, MarqetaUser, MarqetaUserTransition, MarqetaVelocityControl,
  MarqetaWebhook, NewCardTransition, NewProgramGatewayFundingSource, NewUserTransition, NewWebhook,
  ProgramGatewayFundingSource, SimulateAuthorization, SimulateClearing, SimulationResponse
} from './types.js'

const enc = encodeURIComponent

/** Marqeta's Core API, the endpoints the gateway uses; each method names the documentation page it follows. */
export class MarqetaClient {
  constructor (readonly http: MarqetaHttp, private readonly pageSize = 10) {}

  static fromConfig (config: MarqetaConfig, extra: Pick<MarqetaHttpOptions, 'onRetry'> = {}): MarqetaClient {
    const { applicationToken, adminAccessToken } = marqetaCredentials(config)
    const http = new MarqetaHttp({
      baseUrl: config.MARQETA_BASE_URL,
      applicationToken,
      adminAccessToken,
      timeoutMs: config.MARQETA_TIMEOUT_MS,
      retries: config.MARQETA_RETRIES,
      retryMinMs: config.MARQETA_RETRY_MIN_MS,
      retryMaxMs: config.MARQETA_RETRY_MAX_MS,
      ...extra
    })
    return new MarqetaClient(http, config.MARQETA_PAGE_SIZE)
  }

  private readonly page = <T>(path: string) => async (query: Query): Promise<Page<T>> => await this.http.request<Page<T>>('GET', path, { query })

  // https://www.marqeta.com/docs/core-api/users (List users: GET /users, paginated)
  listUsers (): AsyncGenerator<MarqetaUser> {
    return paginate(this.page<MarqetaUser>('/users'), {}, this.pageSize)
  }

  // https://www.marqeta.com/docs/core-api/users (Retrieve user: GET /users/{token})
  async getUser (token: string): Promise<MarqetaUser> {
    return await this.http.request('GET', `/users/${enc(token)}`)
  }

  // https://www.marqeta.com/docs/core-api/cards (List cards for user: GET /cards/user/{token}, paginated)
  listCardsForUser (userToken: string): AsyncGenerator<MarqetaCard> {
    return paginate(this.page<MarqetaCard>(`/cards/user/${enc(userToken)}`), {}, this.pageSize)
  }

  // https://www.marqeta.com/docs/core-api/cards (Retrieve card: GET /cards/{token})
  async getCard (token: string): Promise<MarqetaCard> {
    return await this.http.request('GET', `/cards/${enc(token)}`)
  }

  // https://www.marqeta.com/docs/core-api/card-transitions/create (POST /cardtransitions)
  async createCardTransition (transition: NewCardTransition): Promise<MarqetaCardTransition> {
    return await this.http.request('POST', '/cardtransitions', { body: transition, idempotent: transition.token !== undefined })
  }

  // https://www.marqeta.com/docs/core-api/card-transitions/list-transitions-for-card (GET /cardtransitions/card/{token}, 1-10 per page)
  listCardTransitions (cardToken: string): AsyncGenerator<MarqetaCardTransition> {
    return paginate(this.page<MarqetaCardTransition>(`/cardtransitions/card/${enc(cardToken)}`), {}, Math.min(this.pageSize, 10))
  }

  // https://www.marqeta.com/docs/core-api/user-transitions/create-user-transition (POST /usertransitions)
  async createUserTransition (transition: NewUserTransition): Promise<MarqetaUserTransition> {
    return await this.http.request('POST', '/usertransitions', { body: transition, idempotent: transition.token !== undefined })
  }

  // https://www.marqeta.com/docs/core-api/user-transitions/list-transitions-for-user (GET /usertransitions/user/{user_token}, 1-10 per page)
  listUserTransitions (userToken: string): AsyncGenerator<MarqetaUserTransition> {
    return paginate(this.page<MarqetaUserTransition>(`/usertransitions/user/${enc(userToken)}`), {}, Math.min(this.pageSize, 10))
  }

  // https://www.marqeta.com/docs/core-api/velocity-controls/list-velocity-controls (GET /velocitycontrols; no `user` = the whole program)
  listVelocityControls (filter: { user?: string } = {}): AsyncGenerator<MarqetaVelocityControl> {
    return paginate(this.page<MarqetaVelocityControl>('/velocitycontrols'), { user: filter.user }, this.pageSize)
  }

  // https://www.marqeta.com/docs/core-api/authorization-controls/list-authorization-controls (GET /authcontrols; no `user` = the whole program)
  listAuthControls (filter: { user?: string } = {}): AsyncGenerator<MarqetaAuthControl> {
    return paginate(this.page<MarqetaAuthControl>('/authcontrols'), { user: filter.user }, this.pageSize)
  }

  // https://www.marqeta.com/docs/core-api/webhooks/list-webhooks (GET /webhooks, 1-10 per page; credentials masked)
  listWebhooks (): AsyncGenerator<MarqetaWebhook> {
    return paginate(this.page<MarqetaWebhook>('/webhooks'), {}, Math.min(this.pageSize, 10))
  }

  // https://www.marqeta.com/docs/core-api/webhooks/create-webhook (POST /webhooks)
  async createWebhook (webhook: NewWebhook): Promise<MarqetaWebhook> {
    return await this.http.request('POST', '/webhooks', { body: webhook, idempotent: webhook.token !== undefined })
  }

  // https://www.marqeta.com/docs/core-api/webhooks/update-webhook (PUT /webhooks/{token})
  async updateWebhook (token: string, webhook: Omit<NewWebhook, 'token'>): Promise<MarqetaWebhook> {
    return await this.http.request('PUT', `/webhooks/${enc(token)}`, { body: webhook })
  }

  // https://www.marqeta.com/docs/core-api/program-gateway-funding-sources/create-program-gateway-source (POST /fundingsources/programgateway)
  async createProgramGatewayFundingSource (source: NewProgramGatewayFundingSource): Promise<ProgramGatewayFundingSource> {
    return await this.http.request('POST', '/fundingsources/programgateway', { body: source, idempotent: source.token !== undefined })
  }

  // https://www.marqeta.com/docs/core-api/program-gateway-funding-sources/retrieve-program-gateway-source (GET /fundingsources/programgateway/{token})
  async getProgramGatewayFundingSource (token: string): Promise<ProgramGatewayFundingSource> {
    return await this.http.request('GET', `/fundingsources/programgateway/${enc(token)}`)
  }

  // https://www.marqeta.com/docs/core-api/program-gateway-funding-sources/update-program-gateway-source (PUT /fundingsources/programgateway/{token})
  async updateProgramGatewayFundingSource (token: string, source: Omit<NewProgramGatewayFundingSource, 'token'>): Promise<ProgramGatewayFundingSource> {
    return await this.http.request('PUT', `/fundingsources/programgateway/${enc(token)}`, { body: source })
  }

  // https://www.marqeta.com/docs/core-api/simulations-card-transactions/authorizations/simulate-authorization-v2
  // (POST /simulations/cardtransactions/authorization, sandbox only; never repeated but on 429: it has no token)
  async simulateAuthorization (request: SimulateAuthorization): Promise<SimulationResponse> {
    return await this.http.request('POST', '/simulations/cardtransactions/authorization', { body: request, idempotent: false })
  }

  // https://www.marqeta.com/docs/core-api/simulations-card-transactions/authorizations/simulate-authorization-clearing
  // (POST /simulations/cardtransactions/authorization.clearing, sandbox only)
  async simulateClearing (request: SimulateClearing): Promise<SimulationResponse> {
    return await this.http.request('POST', '/simulations/cardtransactions/authorization.clearing', { body: request, idempotent: false })
  }

  async close (): Promise<void> {
    await this.http.close()
  }
}
