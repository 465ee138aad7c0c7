import type { Queryable } from '../db.js'
import { currencyExponent, formatMinor } from '../money.js'
import { httpError } from './errors.js'
import { amountMinor, exponentOf } from './money.js'
import { iso, tokenOrNew } from './tokens.js'

export type VelocityWindow = 'DAY' | 'WEEK' | 'MONTH' | 'LIFETIME' | 'TRANSACTION'

export interface Association { user_token?: string, card_token?: string }
export interface MerchantScope { mcc?: string, mid?: string }

export interface VelocityControl {
  token: string
  name?: string
  association: Association
  currency_code: string
  amount_limit?: string
  usage_limit?: number
  velocity_window: VelocityWindow
  merchant_scope: MerchantScope
  active: boolean
  created_time: string
}

export interface AuthControl {
  token: string
  name?: string
  association: Association
  merchant_scope: MerchantScope
  active: boolean
  created_time: string
}

export interface NewVelocityControl {
  token?: string
  name?: string
  association: Association
  currency_code: string
  amount_limit?: unknown
  usage_limit?: number
  velocity_window: VelocityWindow
  merchant_scope?: MerchantScope
  active?: boolean
}

export interface NewAuthControl {
  token?: string
  name?: string
  association: Association
  merchant_scope: MerchantScope
  active?: boolean
}

/**
 * The cache scopes a control change invalidates: the owning user's token (a card's control lives under its user),
 * or '' (PROGRAM_SCOPE of src/jit/context.ts) for a program-wide control.
 */
export interface ControlChange<T> { control: T, scope: string }

const VELOCITY_COLUMNS = 'v.token, v.name, v.user_token, v.card_token, v.currency_code, v.amount_limit::text, v.usage_limit, v.velocity_window, v.mcc, v.mid, v.active, v.created_time'
const AUTH_COLUMNS = 'a.token, a.name, a.user_token, a.card_token, a.mcc, a.mid, a.active, a.created_time'

function common (row: any): { token: string, name?: string, association: Association, merchant_scope: MerchantScope } {
  const association: Association = {}
  if (row.user_token !== null) association.user_token = row.user_token
  if (row.card_token !== null) association.card_token = row.card_token
  const merchantScope: MerchantScope = {}
  if (row.mcc !== null) merchantScope.mcc = row.mcc
  if (row.mid !== null) merchantScope.mid = row.mid
  return { token: row.token, ...(row.name !== null ? { name: row.name } : {}), association, merchant_scope: merchantScope }
}

function toVelocity (row: any): VelocityControl {
  const control: VelocityControl = {
    ...common(row),
    currency_code: row.currency_code,
    velocity_window: row.velocity_window,
    active: row.active,
    created_time: iso(row.created_time)
  }
  if (row.amount_limit !== null) control.amount_limit = formatMinor(row.amount_limit, currencyExponent(row.currency_code) ?? 2)
  if (row.usage_limit !== null) control.usage_limit = row.usage_limit
  return control
}

function toAuth (row: any): AuthControl {
  return { ...common(row), active: row.active, created_time: iso(row.created_time) }
}

/** Checks that the associated user and card exist (404) and agree (400); returns the cache scope. */
async function resolveAssociation (db: Queryable, association: Association): Promise<string> {
  const { user_token: userToken, card_token: cardToken } = association
  if (userToken === undefined && cardToken === undefined) return ''
  const { rows } = await db.query(
    `SELECT (SELECT token FROM users WHERE token = $1) AS user_token,
            (SELECT user_token FROM cards WHERE token = $2) AS card_user_token`, [userToken ?? null, cardToken ?? null])
  const found = rows[0]
  if (userToken !== undefined && found.user_token === null) throw httpError(404, `user ${userToken} not found`, 'NOT_FOUND')
  if (cardToken !== undefined && found.card_user_token === null) throw httpError(404, `card ${cardToken} not found`, 'NOT_FOUND')
  if (userToken !== undefined && cardToken !== undefined && found.card_user_token !== userToken) {
    throw httpError(400, `body/association/card_token does not belong to user ${userToken}`)
  }
  return userToken ?? found.card_user_token
}

/** The cache scope of a stored control row. */
async function scopeOf (db: Queryable, row: { user_token: string | null, card_token: string | null }): Promise<string> {
  if (row.user_token !== null) return row.user_token
  if (row.card_token === null) return ''
  const { rows } = await db.query('SELECT user_token FROM cards WHERE token = $1', [row.card_token])
  return rows[0]?.user_token ?? ''
}

export async function createVelocityControl (db: Queryable, input: NewVelocityControl): Promise<ControlChange<VelocityControl>> {
  const exponent = exponentOf(input.currency_code, 'body/currency_code')
  const amountLimit = input.amount_limit === undefined ? null : amountMinor(input.amount_limit, exponent, 'body/amount_limit')
  if (amountLimit === null && input.usage_limit === undefined) throw httpError(400, 'body must have amount_limit or usage_limit')
  const scope = await resolveAssociation(db, input.association)
  const token = tokenOrNew(input.token)
  const { rows } = await db.query(
    `INSERT INTO velocity_controls AS v (token, name, user_token, card_token, currency_code, amount_limit, usage_limit,
                                          velocity_window, mcc, mid, active)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
     ON CONFLICT (token) DO NOTHING RETURNING ${VELOCITY_COLUMNS}`,
    [token, input.name ?? null, input.association.user_token ?? null, input.association.card_token ?? null, input.currency_code,
      amountLimit?.toString() ?? null, input.usage_limit ?? null, input.velocity_window,
      input.merchant_scope?.mcc ?? null, input.merchant_scope?.mid ?? null, input.active ?? true])
  if (rows.length === 0) throw httpError(409, `a velocity control with token ${token} already exists`, 'DUPLICATE_TOKEN')
  return { control: toVelocity(rows[0]), scope }
}

export async function createAuthControl (db: Queryable, input: NewAuthControl): Promise<ControlChange<AuthControl>> {
  if (input.merchant_scope.mcc === undefined && input.merchant_scope.mid === undefined) {
    throw httpError(400, 'body/merchant_scope must have mcc or mid')
  }
  const scope = await resolveAssociation(db, input.association)
  const token = tokenOrNew(input.token)
  const { rows } = await db.query(
    `INSERT INTO auth_controls AS a (token, name, user_token, card_token, mcc, mid, active)
     VALUES ($1, $2, $3, $4, $5, $6, $7)
     ON CONFLICT (token) DO NOTHING RETURNING ${AUTH_COLUMNS}`,
    [token, input.name ?? null, input.association.user_token ?? null, input.association.card_token ?? null,
      input.merchant_scope.mcc ?? null, input.merchant_scope.mid ?? null, input.active ?? true])
  if (rows.length === 0) throw httpError(409, `an auth control with token ${token} already exists`, 'DUPLICATE_TOKEN')
  return { control: toAuth(rows[0]), scope }
}

export interface ControlFilter { user_token?: string, card_token?: string }

/** A user's controls are its own and its cards'; without a filter, every control (program-wide included). */
function filterSql (alias: string, filter: ControlFilter): { where: string, values: string[] } {
  const clauses: string[] = []
  const values: string[] = []
  if (filter.user_token !== undefined) {
    values.push(filter.user_token)
    clauses.push(`(${alias}.user_token = $${values.length} OR ${alias}.card_token IN (SELECT token FROM cards WHERE user_token = $${values.length}))`)
  }
  if (filter.card_token !== undefined) {
    values.push(filter.card_token)
    clauses.push(`${alias}.card_token = $${values.length}`)
  }
  return { where: clauses.length > 0 ? `WHERE ${clauses.join(' AND ')}` : '', values }
}

export async function listVelocityControls (db: Queryable, filter: ControlFilter): Promise<VelocityControl[]> {
  const { where, values } = filterSql('v', filter)
  const { rows } = await db.query(`SELECT ${VELOCITY_COLUMNS} FROM velocity_controls v ${where} ORDER BY v.created_time, v.token LIMIT 1000`, values)
  return rows.map(toVelocity)
}

export async function listAuthControls (db: Queryable, filter: ControlFilter): Promise<AuthControl[]> {
  const { where, values } = filterSql('a', filter)
  const { rows } = await db.query(`SELECT ${AUTH_COLUMNS} FROM auth_controls a ${where} ORDER BY a.created_time, a.token LIMIT 1000`, values)
  return rows.map(toAuth)
}

export async function deactivateVelocityControl (db: Queryable, token: string): Promise<ControlChange<VelocityControl>> {
  const { rows } = await db.query(`UPDATE velocity_controls v SET active = false WHERE token = $1 RETURNING ${VELOCITY_COLUMNS}`, [token])
  if (rows.length === 0) throw httpError(404, `velocity control ${token} not found`, 'NOT_FOUND')
  return { control: toVelocity(rows[0]), scope: await scopeOf(db, rows[0]) }
}

export async function deactivateAuthControl (db: Queryable, token: string): Promise<ControlChange<AuthControl>> {
  const { rows } = await db.query(`UPDATE auth_controls a SET active = false WHERE token = $1 RETURNING ${AUTH_COLUMNS}`, [token])
  if (rows.length === 0) throw httpError(404, `auth control ${token} not found`, 'NOT_FOUND')
  return { control: toAuth(rows[0]), scope: await scopeOf(db, rows[0]) }
}
