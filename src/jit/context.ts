import type pg from 'pg'
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
 * The version of a part's scope, read in the same snapshot as the part (migration 014): the cardholder's (scope = a
 * user token; 0 when that user does not exist) or the program's (scope PROGRAM_SCOPE).
 */
export interface PartVersion { scope: string, version: number }

/** The parts of one request's context, split by what changes together: each has its own cache TTL (DESIGN §8). */
export interface ContextParts {
  card?: CardRow | null
  user?: UserRow | null
  /** The user's own controls and its cards' (scope = the user token). */
  userControls?: Controls
  /** Program-wide controls (scope PROGRAM_SCOPE). */
  programControls?: Controls
  /**
   * Each part's version: a card's is its owner's, an unknown card's the requesting user's (a new card bumps its
   * owner's version). A source without versions (a test's or the bench's) makes decisions the ledger does not check.
   */
  versions?: Partial<Record<ContextPart, PartVersion>>
}
export type ContextPart = 'card' | 'user' | 'userControls' | 'programControls'
export const allContextParts: ContextPart[] = ['card', 'user', 'userControls', 'programControls']

/**
 * Where the authorization context comes from: the parts asked for, in one round trip. `fresh`: straight from
 * PostgreSQL (a cached source then stores what it loaded), for a decision the ledger found stale.
 */
export interface ContextSource {
  parts: (cardToken: string | undefined, userToken: string, wanted: ContextPart[], opts?: { fresh?: boolean }) => Promise<ContextParts>
}

/** Scope → version of everything a decision used; jit_decide refuses the decision when one is not current. */
export type ContextVersions = Record<string, number>

export interface AuthContext {
  card: CardRow | null
  user: UserRow | null
  controls: Controls
  versions?: ContextVersions
}

const controlsJson = (owner: string): string => `json_build_object(
  'auth', (SELECT coalesce(json_agg(a ORDER BY a.token), '[]') FROM (
            SELECT token, user_token, card_token, mcc, mid FROM auth_controls WHERE active AND (${owner})) a),
  'velocity', (SELECT coalesce(json_agg(v ORDER BY v.token), '[]') FROM (
            SELECT token, user_token, card_token, currency_code, amount_limit::text, usage_limit, velocity_window, mcc, mid,
                   to_json(created_time) #>> '{}' AS created_time
              FROM velocity_controls WHERE active AND (${owner})) v))`

// One statement for a batch of loads (one row each, in `ord` order), any subset of the parts per load: a part not
// asked for is a sub-select behind a false CASE, which PostgreSQL never runs.
const userVersion = 'coalesce((SELECT context_version FROM users WHERE token = r.user_token), 0)'
const PARTS_SQL = `SELECT r.ord::int AS ord,
  CASE WHEN r.want_card THEN coalesce(
    (SELECT json_build_object('value', json_build_object('token', c.token, 'user_token', c.user_token, 'state', c.state), 'scope', c.user_token, 'version', u.context_version)
       FROM cards c JOIN users u ON u.token = c.user_token WHERE c.token = r.card_token),
    json_build_object('value', NULL, 'scope', r.user_token, 'version', ${userVersion})) END AS card,
  CASE WHEN r.want_user THEN json_build_object('value', (SELECT json_build_object('token', token, 'status', status) FROM users WHERE token = r.user_token),
    'scope', r.user_token, 'version', ${userVersion}) END AS "user",
  CASE WHEN r.want_user_controls THEN json_build_object('value', ${controlsJson('user_token = r.user_token OR card_token IN (SELECT token FROM cards WHERE user_token = r.user_token)')},
    'scope', r.user_token, 'version', ${userVersion}) END AS user_controls,
  CASE WHEN r.want_program_controls THEN json_build_object('value', ${controlsJson('user_token IS NULL AND card_token IS NULL')},
    'scope', '${PROGRAM_SCOPE}', 'version', (SELECT version FROM program_context)) END AS program_controls
  FROM unnest($1::text[], $2::text[], $3::boolean[], $4::boolean[], $5::boolean[], $6::boolean[])
       WITH ORDINALITY AS r(card_token, user_token, want_card, want_user, want_user_controls, want_program_controls, ord)`

interface Load {
  cardToken: string | undefined
  userToken: string
  wanted: ContextPart[]
  resolve: (parts: ContextParts) => void
  reject: (err: unknown) => void
}

/** Whether a load asks for this part (a card only when it names one). */
const want = (l: Load, part: ContextPart): boolean => l.wanted.includes(part) && (part !== 'card' || l.cardToken !== undefined)

export interface PgContextOptions {
  /** Statements running at once (default 1); the loads asked for meanwhile go together in the next one. */
  maxInFlight?: number
  /** Loads per statement at most (default 64). */
  maxBatch?: number
  /**
   * Client-side bound on a statement (default 2000 ms): a server-side statement_timeout cannot end one whose
   * connection went half-open, and the slot it holds would keep every later load waiting.
   */
  queryTimeoutMs?: number
}

/**
 * The context straight from PostgreSQL. Loads are grouped like the ledger's decisions: a load that finds nothing
 * running goes alone at once; while `maxInFlight` statements run, new loads queue and the next statement takes them
 * all (one round trip and one snapshot for the batch, each load its own row).
 */
export class PgContextSource implements ContextSource {
  private readonly queue: Load[] = []
  private inFlight = 0

  constructor (private readonly db: Queryable, private readonly opts: PgContextOptions = {}) {}

  async parts (cardToken: string | undefined, userToken: string, wanted: ContextPart[], _opts?: { fresh?: boolean }): Promise<ContextParts> {
    return await new Promise((resolve, reject) => {
      this.queue.push({ cardToken, userToken, wanted, resolve, reject })
      this.pump()
    })
  }

  private pump (): void {
    while (this.inFlight < (this.opts.maxInFlight ?? 1) && this.queue.length > 0) {
      const batch = this.queue.splice(0, this.opts.maxBatch ?? 64)
      this.inFlight++
      void this.load(batch).finally(() => {
        this.inFlight--
        this.pump()
      })
    }
  }

  private async load (batch: Load[]): Promise<void> {
    let rows: Array<Record<string, unknown>>
    try {
      // query_timeout: read by node-postgres per query, not in its types.
      ({ rows } = await this.db.query(<pg.QueryConfig & { query_timeout: number }>{
        name: 'jit-context-parts',
        text: PARTS_SQL,
        query_timeout: this.opts.queryTimeoutMs ?? 2000,
        values: [batch.map((l) => l.cardToken ?? null), batch.map((l) => l.userToken), batch.map((l) => want(l, 'card')), batch.map((l) => want(l, 'user')),
          batch.map((l) => want(l, 'userControls')), batch.map((l) => want(l, 'programControls'))]
      }))
    } catch (err) {
      for (const l of batch) l.reject(err)
      return
    }
    if (rows.length !== batch.length) {
      for (const l of batch) l.reject(new Error(`context statement answered ${rows.length} rows for ${batch.length} loads`))
      return
    }
    const answered = new Set<Load>()
    try {
      this.answer(batch, rows, answered)
    } catch (err) {
      for (const l of batch) if (!answered.has(l)) l.reject(err)
    }
  }

  private answer (batch: Load[], rows: Array<Record<string, unknown>>, answered: Set<Load>): void {
    for (const row of rows) {
      const l = batch[(row.ord as number) - 1]
      const parts: ContextParts = { versions: {} }
      const take = <P extends ContextPart>(part: P, column: string): void => {
        if (!want(l, part)) return
        const { value, scope, version } = row[column] as { value: ContextParts[P], scope: string, version: number }
        parts[part] = value
        parts.versions![part] = { scope, version }
      }
      take('card', 'card')
      take('user', 'user')
      take('userControls', 'user_controls')
      take('programControls', 'program_controls')
      answered.add(l)
      l.resolve(parts)
    }
  }
}

/**
 * Loads everything the rules need for one request; the cache plugin hands in a cached source. `fresh` bypasses the
 * cache (and refreshes it).
 */
export async function loadAuthContext (source: ContextSource, cardToken: string | undefined, userToken: string, fresh = false): Promise<AuthContext> {
  const wanted = cardToken === undefined ? allContextParts.filter((p) => p !== 'card') : allContextParts
  const parts = await source.parts(cardToken, userToken, wanted, { fresh })
  const empty: Controls = { auth: [], velocity: [] }
  const user = parts.userControls ?? empty
  const program = parts.programControls ?? empty
  return {
    card: parts.card ?? null,
    user: parts.user ?? null,
    controls: {
      auth: [...program.auth, ...user.auth],
      velocity: [...program.velocity, ...user.velocity]
    },
    versions: parts.versions === undefined ? undefined : versionsOf(parts, wanted, userToken)
  }
}

/** The version per scope the decision used; parts cached at different times may disagree: the lowest counts. */
function versionsOf (parts: ContextParts, wanted: ContextPart[], userToken: string): ContextVersions | undefined {
  const versions: ContextVersions = {}
  for (const part of wanted) {
    const v = parts.versions?.[part]
    // A part without a version cannot be checked, so neither can the decision.
    if (v === undefined) return undefined
    versions[v.scope] = Math.min(versions[v.scope] ?? Number.MAX_SAFE_INTEGER, v.version)
  }
  // An unknown card cached for another user's request says nothing about this user's cards: never current.
  if (parts.card === null && parts.versions?.card?.scope !== userToken) versions[userToken] = -1
  return versions
}
