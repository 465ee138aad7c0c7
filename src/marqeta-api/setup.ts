import { createHash } from 'node:crypto'
import type { MarqetaClient } from './client.js'
import { MarqetaApiError } from './errors.js'
import { all } from './pagination.js'
import type { MarqetaWebhook, NewProgramGatewayFundingSource, NewWebhook, ProgramGatewayFundingSource } from './types.js'

/** What `setup` registers with Marqeta: our JIT endpoint and our webhook endpoint, each with its credentials. */
export interface SetupTarget {
  fundingSource: {
    token: string
    name: string
    url: string
    username: string
    password: string
    customHeader?: Record<string, string>
  }
  webhook: {
    token: string
    name: string
    url: string
    events: string[]
    username: string
    password: string
    secret?: string
  }
}

export type SetupAction = 'create' | 'update' | 'unchanged'

export interface SetupStep {
  resource: 'program gateway funding source' | 'webhook'
  token: string
  action: SetupAction
  /** The fields that differ (names only: values may be secrets). */
  changed: string[]
}

/**
 * Marqeta's password rule for both the gateway's and the webhook's Basic auth: 20–50 characters with a digit, a lower
 * and an upper case letter and a symbol. Checked here so that a bad value is named before any call.
 * @see https://www.marqeta.com/docs/core-api/program-gateway-funding-sources/create-program-gateway-source
 */
export function passwordProblem (password: string): string | undefined {
  if (password.length < 20 || password.length > 50) return 'must be 20–50 characters'
  if (!/[0-9]/.test(password)) return 'must contain a digit'
  if (!/[a-z]/.test(password)) return 'must contain a lower-case letter'
  if (!/[A-Z]/.test(password)) return 'must contain an upper-case letter'
  if (!/[@#$%!^&*()\\_+~`\-=[\]{},;:'",./<>?]/.test(password)) return 'must contain a symbol such as @ # $ % ! ^ & *'
  return undefined
}

/**
 * Marqeta masks a webhook's username, password and secret in every response, so they cannot be compared. The
 * webhook's name carries a short digest of them instead: a changed credential changes the name, and `setup` updates.
 */
export function credentialsDigest (parts: Array<string | undefined>): string {
  return createHash('sha256').update(JSON.stringify(parts)).digest('hex').slice(0, 12)
}

export function webhookName (target: SetupTarget['webhook']): string {
  return `${target.name} cfg:${credentialsDigest([target.username, target.password, target.secret])}`
}

/**
 * Brings Marqeta to the target: each resource is read first and written only when it differs, so a second run
 * changes nothing. With `dryRun`, only reads happen and the steps say what would be written.
 */
export async function setup (client: MarqetaClient, target: SetupTarget, { dryRun = false } = {}): Promise<SetupStep[]> {
  return [await setupFundingSource(client, target.fundingSource, dryRun), await setupWebhook(client, target.webhook, dryRun)]
}

async function setupFundingSource (client: MarqetaClient, target: SetupTarget['fundingSource'], dryRun: boolean): Promise<SetupStep> {
  const wanted: NewProgramGatewayFundingSource = {
    name: target.name,
    url: target.url,
    basic_auth_username: target.username,
    basic_auth_password: target.password,
    active: true,
    ...(target.customHeader !== undefined ? { custom_header: target.customHeader } : {})
  }
  const current = await getOrUndefined(() => client.getProgramGatewayFundingSource(target.token))
  return await reconcile({
    resource: 'program gateway funding source',
    token: target.token,
    dryRun,
    changed: current === undefined ? undefined : fundingSourceDifferences(current, wanted),
    create: async () => { await client.createProgramGatewayFundingSource({ token: target.token, ...wanted }) },
    update: async () => { await client.updateProgramGatewayFundingSource(target.token, wanted) }
  })
}

/**
 * One resource brought to its target: created when missing (`changed` undefined), updated only when something
 * differs, and nothing written on a dry run; the step says which.
 */
async function reconcile (r: { resource: SetupStep['resource'], token: string, dryRun: boolean, changed: string[] | undefined,
  create: () => Promise<void>, update: () => Promise<void> }): Promise<SetupStep> {
  const action: SetupStep['action'] = r.changed === undefined ? 'create' : r.changed.length === 0 ? 'unchanged' : 'update'
  if (!r.dryRun && action === 'create') await r.create()
  if (!r.dryRun && action === 'update') await r.update()
  return { resource: r.resource, token: r.token, action, changed: r.changed ?? [] }
}

function fundingSourceDifferences (current: ProgramGatewayFundingSource, wanted: NewProgramGatewayFundingSource): string[] {
  const changed: string[] = []
  if (current.name !== wanted.name) changed.push('name')
  if (current.url !== wanted.url) changed.push('url')
  if (current.basic_auth_username !== wanted.basic_auth_username) changed.push('basic_auth_username')
  if (current.basic_auth_password !== wanted.basic_auth_password) changed.push('basic_auth_password')
  if (current.active !== true) changed.push('active')
  if (!sameRecord(current.custom_header, wanted.custom_header)) changed.push('custom_header')
  return changed
}

async function setupWebhook (client: MarqetaClient, target: SetupTarget['webhook'], dryRun: boolean): Promise<SetupStep> {
  const wanted: Omit<NewWebhook, 'token'> = {
    name: webhookName(target),
    active: true,
    events: target.events,
    config: {
      url: target.url,
      basic_auth_username: target.username,
      basic_auth_password: target.password,
      ...(target.secret !== undefined ? { secret: target.secret } : {})
    }
  }
  // Marqeta has no lookup of a webhook by token in the list; there are few webhooks, so read them all.
  const current = (await all(client.listWebhooks())).find((w) => w.token === target.token)
  return await reconcile({
    resource: 'webhook',
    token: target.token,
    dryRun,
    changed: current === undefined ? undefined : webhookDifferences(current, wanted),
    create: async () => { await client.createWebhook({ token: target.token, ...wanted }) },
    update: async () => { await client.updateWebhook(target.token, wanted) }
  })
}

function webhookDifferences (current: MarqetaWebhook, wanted: Omit<NewWebhook, 'token'>): string[] {
  const changed: string[] = []
  if (current.name !== wanted.name) changed.push(current.name.replace(/ cfg:[0-9a-f]+$/, '') === wanted.name.replace(/ cfg:[0-9a-f]+$/, '') ? 'credentials' : 'name')
  if (current.config?.url !== wanted.config.url) changed.push('url')
  if (current.active !== true) changed.push('active')
  if ([...(current.events ?? [])].sort().join(',') !== [...wanted.events].sort().join(',')) changed.push('events')
  return changed
}

function sameRecord (a: Record<string, string> | undefined, b: Record<string, string> | undefined): boolean {
  const norm = (r: Record<string, string> | undefined): string => JSON.stringify(Object.entries(r ?? {}).sort(([x], [y]) => x.localeCompare(y)))
  return norm(a) === norm(b)
}

async function getOrUndefined<T> (get: () => Promise<T>): Promise<T | undefined> {
  try {
    return await get()
  } catch (err) {
    if (err instanceof MarqetaApiError && err.statusCode === 404) return undefined
    throw err
  }
}
