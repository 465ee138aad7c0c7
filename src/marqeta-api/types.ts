/**
 * The parts of Marqeta's Core API resources the gateway reads or writes. Marqeta returns more fields (and adds
 * some over time): they are kept in the objects but not typed here.
 */

/** @see https://www.marqeta.com/docs/core-api/users */
export interface MarqetaUser {
  token: string
  status?: 'UNVERIFIED' | 'LIMITED' | 'ACTIVE' | 'SUSPENDED' | 'CLOSED' | 'TERMINATED' | string
  active?: boolean
  first_name?: string
  last_name?: string
  metadata?: Record<string, string>
  created_time?: string
  last_modified_time?: string
}

/** @see https://www.marqeta.com/docs/core-api/cards */
export interface MarqetaCard {
  token: string
  user_token: string
  card_product_token?: string
  state?: 'ACTIVE' | 'SUSPENDED' | 'TERMINATED' | 'UNACTIVATED' | 'LIMITED' | string
  last_four?: string
  created_time?: string
  last_modified_time?: string
}

export type TransitionChannel = 'API' | 'IVR' | 'FRAUD' | 'ADMIN' | 'SYSTEM'

/** @see https://www.marqeta.com/docs/core-api/card-transitions/create */
export interface NewCardTransition {
  token?: string
  card_token: string
  state: 'ACTIVE' | 'SUSPENDED' | 'TERMINATED' | 'UNACTIVATED'
  channel: TransitionChannel
  reason_code: string
  reason?: string
}

export interface MarqetaCardTransition extends NewCardTransition {
  token: string
  user_token?: string
  created_time?: string
}

/** @see https://www.marqeta.com/docs/core-api/user-transitions/create-user-transition */
export interface NewUserTransition {
  token?: string
  user_token: string
  status: 'UNVERIFIED' | 'LIMITED' | 'ACTIVE' | 'SUSPENDED' | 'CLOSED' | 'TERMINATED'
  channel: TransitionChannel
  reason_code: string
  reason?: string
}

export interface MarqetaUserTransition extends NewUserTransition {
  token: string
  created_time?: string
}

/** Marqeta associates controls with a user or a card product, or (neither) the whole program. */
export interface MarqetaAssociation { user_token?: string, card_product_token?: string }
export interface MarqetaMerchantScope { mcc?: string, mid?: string, mcc_group?: string }

/** @see https://www.marqeta.com/docs/core-api/velocity-controls/velocity-controls-object */
export interface MarqetaVelocityControl {
  token: string
  name?: string
  association?: MarqetaAssociation
  merchant_scope?: MarqetaMerchantScope
  currency_code: string
  /** A decimal in major units (`Format: 0.00`). */
  amount_limit?: number | string
  usage_limit?: number
  velocity_window: 'DAY' | 'WEEK' | 'MONTH' | 'LIFETIME' | 'TRANSACTION' | string
  active?: boolean
}

/** @see https://www.marqeta.com/docs/core-api/authorization-controls/authorization-controls-object */
export interface MarqetaAuthControl {
  token: string
  name?: string
  association?: MarqetaAssociation
  merchant_scope?: MarqetaMerchantScope
  active?: boolean
  start_time?: string
  end_time?: string
}

/** @see https://www.marqeta.com/docs/core-api/webhooks/create-webhook */
export interface MarqetaWebhookConfig {
  url: string
  basic_auth_username: string
  basic_auth_password: string
  secret?: string
  custom_header?: Record<string, string>
}

export interface NewWebhook {
  token?: string
  name: string
  active?: boolean
  events: string[]
  config: MarqetaWebhookConfig
}

/** As listed: Marqeta masks `config.secret`, `basic_auth_username` and `basic_auth_password` in every response. */
export interface MarqetaWebhook {
  token: string
  name: string
  active?: boolean
  events: string[]
  config: Partial<MarqetaWebhookConfig> & { url: string }
  created_time?: string
  last_modified_time?: string
}

/** @see https://www.marqeta.com/docs/core-api/program-gateway-funding-sources/create-program-gateway-source */
export interface NewProgramGatewayFundingSource {
  token?: string
  name: string
  url: string
  basic_auth_username: string
  basic_auth_password: string
  active?: boolean
  custom_header?: Record<string, string>
  timeout_millis?: number
}

/** Retrieve returns the Basic-auth password too (unlike webhooks). */
export interface ProgramGatewayFundingSource extends NewProgramGatewayFundingSource {
  token: string
  account?: string
  created_time?: string
  last_modified_time?: string
}

/** @see https://www.marqeta.com/docs/core-api/simulations-card-transactions/authorizations/simulate-authorization-v2 */
export interface SimulateAuthorization {
  card_token: string
  /** A decimal in major units. */
  amount: number
  mid?: string
  card_acceptor?: { mcc?: string, name?: string }
  currency_code?: string
}

/** @see https://www.marqeta.com/docs/core-api/simulations-card-transactions/authorizations/simulate-authorization-clearing */
export interface SimulateClearing {
  preceding_related_transaction_token: string
  amount: number
}

/** The transaction Marqeta simulated (its shape follows the transaction model; we read these few fields). */
export interface SimulationResponse {
  transaction?: { token?: string, type?: string, state?: string, amount?: number, response?: { code?: string, memo?: string }, [key: string]: unknown }
  [key: string]: unknown
}
