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

/** The parts of one request's context, split by what changes together: each has its own cache TTL (DESIGN §8). */
export interface ContextParts {
  card?: CardRow | null
  user?: UserRow | null
  /** The user's own controls and its cards' (scope = the user token). */
  userControls?: Controls
  /** Program-wide controls (scope PROGRAM_SCOPE). */
  programControls?: Controls
}
export type ContextPart = keyof ContextParts
export const allContextParts: ContextPart[] = ['card', 'user', 'userControls', 'programControls']

/** Where the authorization context comes from: the parts asked for, in one round trip. */
export interface ContextSource {
  parts: (cardToken: string | undefined, userToken: string, wanted: ContextPart[]) => Promise<ContextParts>
}

export interface AuthContext {
  card: CardRow | null
  user: UserRow | null
  controls: Controls
}

const controlsJson = (owner: string): string => `json_build_object(
  'auth', (SELECT coalesce(json_agg(a ORDER BY a.token), '[]') FROM (
            SELECT token, user_token, card_token, mcc, mid FROM auth_controls WHERE active AND (${owner})) a),
  'velocity', (SELECT coalesce(json_agg(v ORDER BY v.token), '[]') FROM (
            SELECT token, user_token, card_token, currency_code, amount_limit::text, usage_limit, velocity_window, mcc, mid,
                   to_json(created_time) #>> '{}' AS created_time
              FROM velocity_controls WHERE active AND (${owner})) v))`

// One statement for any subset of the parts (a cache miss is on the decision's path): a part not asked for is an
// uncorrelated sub-select behind a false CASE, which PostgreSQL never runs.
const PARTS_SQL = `SELECT
  CASE WHEN $3 THEN (SELECT json_build_object('token', token, 'user_token', user_token, 'state', state) FROM cards WHERE token = $1) END AS card,
  CASE WHEN $4 THEN (SELECT json_build_object('token', token, 'status', status) FROM users WHERE token = $2) END AS "user",
  CASE WHEN $5 THEN ${controlsJson('user_token = $2 OR card_token IN (SELECT token FROM cards WHERE user_token = $2)')} END AS user_controls,
  CASE WHEN $6 THEN ${controlsJson('user_token IS NULL AND card_token IS NULL')} END AS program_controls`

export class PgContextSource implements ContextSource {
  constructor (private readonly db: Queryable) {}

  async parts (cardToken: string | undefined, userToken: string, wanted: ContextPart[]): Promise<ContextParts> {
    const want = (part: ContextPart): boolean => wanted.includes(part)
    const { rows: [row] } = await this.db.query({
      name: 'jit-context-parts',
      text: PARTS_SQL,
      values: [cardToken ?? null, userToken, want('card') && cardToken !== undefined, want('user'), want('userControls'), want('programControls')]
    })
    const parts: ContextParts = {}
    if (want('card')) parts.card = row.card ?? null
    if (want('user')) parts.user = row.user ?? null
    if (want('userControls')) parts.userControls = row.user_controls
    if (want('programControls')) parts.programControls = row.program_controls
    return parts
  }
}

/** Loads everything the rules need for one request; the cache plugin hands in a cached source. */
export async function loadAuthContext (source: ContextSource, cardToken: string | undefined, userToken: string): Promise<AuthContext> {
  const wanted = cardToken === undefined ? allContextParts.filter((p) => p !== 'card') : allContextParts
  const parts = await source.parts(cardToken, userToken, wanted)
  const empty: Controls = { auth: [], velocity: [] }
  const user = parts.userControls ?? empty
  const program = parts.programControls ?? empty
  return {
    card: parts.card ?? null,
    user: parts.user ?? null,
    controls: {
      auth: [...program.auth, ...user.auth],
      velocity: [...program.velocity, ...user.velocity]
    }
  }
}
