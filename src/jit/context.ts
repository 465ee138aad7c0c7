import type { Queryable } from '../db.js'

export interface CardRow { token: string, user_token: string, state: string }
export interface UserRow { token: string, status: string }
export interface AuthControlRow { token: string, user_token: string | null, card_token: string | null, mcc: string | null, mid: string | null }
export interface VelocityControlRow {
  token: string
  user_token: string | null
  card_token: string | null
  currency_code: string
  amount_limit: string | null
  usage_limit: number | null
  velocity_window: 'DAY' | 'WEEK' | 'MONTH' | 'LIFETIME' | 'TRANSACTION'
  mcc: string | null
  mid: string | null
  created_time: string
}
export interface Controls { auth: AuthControlRow[], velocity: VelocityControlRow[] }

/** Program-wide controls live under this scope; a user's own and its cards' controls under the user token. */
export const PROGRAM_SCOPE = ''

/**
 * Where the authorization context comes from. Split by what changes together, because each part has its own cache
 * TTL (DESIGN §8): card, user, and spending controls per scope.
 */
export interface ContextSource {
  card: (token: string) => Promise<CardRow | null>
  user: (token: string) => Promise<UserRow | null>
  controls: (scope: string) => Promise<Controls>
}

export interface AuthContext {
  card: CardRow | null
  user: UserRow | null
  controls: Controls
}

export class PgContextSource implements ContextSource {
  constructor (private readonly db: Queryable) {}

  async card (token: string): Promise<CardRow | null> {
    const { rows } = await this.db.query('SELECT token, user_token, state FROM cards WHERE token = $1', [token])
    return rows[0] ?? null
  }

  async user (token: string): Promise<UserRow | null> {
    const { rows } = await this.db.query('SELECT token, status FROM users WHERE token = $1', [token])
    return rows[0] ?? null
  }

  async controls (scope: string): Promise<Controls> {
    const owner = scope === PROGRAM_SCOPE
      ? 'user_token IS NULL AND card_token IS NULL'
      : 'user_token = $1 OR card_token IN (SELECT token FROM cards WHERE user_token = $1)'
    const values = scope === PROGRAM_SCOPE ? [] : [scope]
    // One statement for both kinds: a context miss is on the decision's path.
    const { rows } = await this.db.query(
      `SELECT (SELECT coalesce(json_agg(a ORDER BY a.token), '[]') FROM (
                 SELECT token, user_token, card_token, mcc, mid FROM auth_controls WHERE active AND (${owner})) a) AS auth,
              (SELECT coalesce(json_agg(v ORDER BY v.token), '[]') FROM (
                 SELECT token, user_token, card_token, currency_code, amount_limit::text, usage_limit, velocity_window, mcc, mid,
                        to_json(created_time) #>> '{}' AS created_time
                   FROM velocity_controls WHERE active AND (${owner})) v) AS velocity`, values)
    return { auth: rows[0].auth, velocity: rows[0].velocity }
  }
}

/** Loads everything the rules need for one request; the cache plugin hands in a cached source. */
export async function loadAuthContext (source: ContextSource, cardToken: string | undefined, userToken: string): Promise<AuthContext> {
  const [card, user, userControls, programControls] = await Promise.all([
    cardToken === undefined ? null : source.card(cardToken),
    source.user(userToken),
    source.controls(userToken),
    source.controls(PROGRAM_SCOPE)
  ])
  return {
    card,
    user,
    controls: {
      auth: [...programControls.auth, ...userControls.auth],
      velocity: [...programControls.velocity, ...userControls.velocity]
    }
  }
}
