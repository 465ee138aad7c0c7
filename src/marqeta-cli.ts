import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import cliProgress from 'cli-progress'
import pg from 'pg'
import { Redis } from 'ioredis'
import { TwoLevelCache } from './cache.js'
import { ConfigError, loadConfig, type Config } from './config.js'
import { Database } from './db.js'
import { contextKeys } from './jit/cached-context.js'
import { MarqetaClient } from './marqeta-api/client.js'
import { loadMarqetaConfig, MarqetaConfigError, publicEndpoints, type MarqetaConfig } from './marqeta-api/config.js'
import { MarqetaError } from './marqeta-api/errors.js'
import { passwordProblem, setup, type SetupTarget } from './marqeta-api/setup.js'
import { marqetaStatus } from './marqeta-api/status.js'
import type { SimulateAuthorization, SimulateClearing } from './marqeta-api/types.js'
import { syncFromMarqeta, type Invalidation, type SyncKind, type SyncSummary } from './marqeta-api/sync.js'

export const USAGE = `usage: npm run marqeta -- <setup|sync|simulate|status> [--dry-run]
  setup                     register (or update) our JIT funding gateway and webhook endpoint with Marqeta
  sync                      import users, cards, their states and velocity/auth controls from Marqeta
  simulate authorize --card <token> --amount <decimal> [--mid <mid>] [--mcc <mcc>] [--currency <code>]
  simulate clear --transaction <token> --amount <decimal>
  status                    show what Marqeta has registered for us
  --dry-run                 read only; print what would be written`

export interface Io {
  out: (line: string) => void
  err: (line: string) => void
  /** The environment; undefined = process.env plus .env, as the server reads it. */
  env?: Record<string, string | undefined>
  /** Shows the sync progress bar (a TTY on stderr). */
  progress?: boolean
}

class UsageError extends Error {}

const options = {
  'dry-run': { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  card: { type: 'string' },
  transaction: { type: 'string' },
  amount: { type: 'string' },
  mid: { type: 'string' },
  mcc: { type: 'string' },
  currency: { type: 'string' }
} as const

/** Runs one command; the exit code: 0 done, 1 failed (Marqeta, configuration, database), 2 usage error. */
export async function main (argv: string[], io: Io): Promise<number> {
  let parsed
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true })
  } catch (err) {
    io.err(`${(err as Error).message}\n${USAGE}`)
    return 2
  }
  const { values, positionals } = parsed
  if (values.help === true) {
    io.out(USAGE)
    return 0
  }
  const [command, ...rest] = positionals
  const dryRun = values['dry-run'] === true
  try {
    switch (command) {
      case 'setup': noMore(rest); return await runSetup(io, dryRun)
      case 'status': noMore(rest); return await runStatus(io)
      case 'sync': noMore(rest); return await runSync(io, dryRun)
      case 'simulate': return await runSimulate(io, rest, values, dryRun)
      default: throw new UsageError(command === undefined ? 'a command is required' : `unknown command ${command}`)
    }
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`${err.message}\n${USAGE}`)
      return 2
    }
    if (err instanceof MarqetaError || err instanceof MarqetaConfigError || err instanceof ConfigError) {
      io.err(err.message)
      return 1
    }
    throw err
  }
}

function noMore (rest: string[]): void {
  if (rest.length > 0) throw new UsageError(`unexpected argument ${rest[0]}`)
}

function configs (io: Io): { gateway: Config, marqeta: MarqetaConfig } {
  return { gateway: loadConfig(io.env, io.err), marqeta: loadMarqetaConfig(io.env) }
}

function client (io: Io, marqeta: MarqetaConfig): MarqetaClient {
  return MarqetaClient.fromConfig(marqeta, { onRetry: ({ method, path, attempt, reason }) => io.err(`retrying ${method} ${path} (attempt ${attempt}): ${reason}`) })
}

/** The registration we want, from the gateway's own credentials (src/config.ts) and the Marqeta settings. */
export function setupTarget (gateway: Config, marqeta: MarqetaConfig): SetupTarget {
  const { jitUrl, webhookUrl } = publicEndpoints(marqeta)
  for (const name of ['JIT_BASIC_AUTH_PASSWORD', 'WEBHOOK_BASIC_AUTH_PASSWORD'] as const) {
    const problem = passwordProblem(gateway[name])
    if (problem !== undefined) throw new MarqetaConfigError(`invalid configuration: ${name} ${problem} (Marqeta's rule for Basic-auth passwords)`)
  }
  return {
    fundingSource: {
      token: marqeta.MARQETA_FUNDING_SOURCE_TOKEN,
      name: marqeta.MARQETA_FUNDING_SOURCE_NAME,
      url: jitUrl,
      username: gateway.JIT_BASIC_AUTH_USER,
      password: gateway.JIT_BASIC_AUTH_PASSWORD,
      ...(gateway.JIT_CUSTOM_HEADER_NAME !== undefined && gateway.JIT_CUSTOM_HEADER_VALUE !== undefined
        ? { customHeader: { [gateway.JIT_CUSTOM_HEADER_NAME]: gateway.JIT_CUSTOM_HEADER_VALUE } }
        : {})
    },
    webhook: {
      token: marqeta.MARQETA_WEBHOOK_TOKEN,
      name: marqeta.MARQETA_WEBHOOK_NAME,
      url: webhookUrl,
      events: marqeta.MARQETA_WEBHOOK_EVENTS.split(',').map((e) => e.trim()).filter((e) => e !== ''),
      username: gateway.WEBHOOK_BASIC_AUTH_USER,
      password: gateway.WEBHOOK_BASIC_AUTH_PASSWORD,
      ...(gateway.WEBHOOK_SECRET !== undefined ? { secret: gateway.WEBHOOK_SECRET } : {})
    }
  }
}

async function runSetup (io: Io, dryRun: boolean): Promise<number> {
  const { gateway, marqeta } = configs(io)
  const target = setupTarget(gateway, marqeta)
  const api = client(io, marqeta)
  try {
    const steps = await setup(api, target, { dryRun })
    for (const step of steps) {
      const verb = { create: dryRun ? 'would create' : 'created', update: dryRun ? 'would update' : 'updated', unchanged: 'unchanged' }[step.action]
      io.out(`${step.resource} ${step.token}: ${verb}${step.changed.length > 0 ? ` (${step.changed.join(', ')})` : ''}`)
    }
    if (steps.every((s) => s.action === 'unchanged')) io.out('Marqeta already has this configuration: nothing changed')
    else if (dryRun) io.out('dry run: nothing written')
    return 0
  } finally {
    await api.close()
  }
}

async function runStatus (io: Io): Promise<number> {
  const { gateway, marqeta } = configs(io)
  const target = setupTarget(gateway, marqeta)
  const api = client(io, marqeta)
  try {
    const status = await marqetaStatus(api, target)
    const fs = status.fundingSource
    if (fs === undefined) io.out(`program gateway funding source ${target.fundingSource.token}: not registered (run setup)`)
    else {
      io.out(`program gateway funding source ${fs.token}: ${fs.active === true ? 'active' : 'INACTIVE'}, url ${fs.url}` +
        `${fs.url === target.fundingSource.url ? '' : ` (ours is ${target.fundingSource.url})`}, user ${fs.basic_auth_username}, ` +
        `password ${fs.password_matches === true ? 'matches' : 'DIFFERS from'} JIT_BASIC_AUTH_PASSWORD`)
    }
    if (status.webhooks.length === 0) io.out('webhooks: none registered')
    for (const w of status.webhooks) {
      io.out(`webhook ${w.token}${w.ours ? ' (ours)' : ''}: ${w.active === true ? 'active' : 'INACTIVE'}, url ${w.config?.url}, events ${(w.events ?? []).join(',')}` +
        (w.ours ? `, credentials ${w.credentials_match === true ? 'match' : 'DIFFER from'} the local ones` : ''))
    }
    if (!status.webhooks.some((w) => w.ours)) io.out(`webhook ${target.webhook.token}: not registered (run setup)`)
    return 0
  } finally {
    await api.close()
  }
}

async function runSync (io: Io, dryRun: boolean): Promise<number> {
  const { gateway, marqeta } = configs(io)
  const api = client(io, marqeta)
  const pool = new pg.Pool({ connectionString: gateway.DATABASE_URL, max: 2 })
  const db = new Database(pool, { slowQueryMs: gateway.PG_SLOW_QUERY_MS })
  const redis = dryRun ? undefined : await connectRedis(io, gateway.REDIS_URL)
  const cache = redis === undefined ? undefined : new TwoLevelCache({ redis, localTtlMs: 0, localMaxEntries: 1, negativeTtlS: 1 })
  const invalidate = cache === undefined
    ? undefined
    : async (what: Invalidation) => await cache.invalidate([
      ...(what.users ?? []).map(contextKeys.user), ...(what.cards ?? []).map(contextKeys.card), ...(what.controls ?? []).map(contextKeys.controls)
    ])
  const bar = io.progress === true
    ? new cliProgress.SingleBar({ format: 'sync {kind} | {value} read', stream: process.stderr, hideCursor: true }, cliProgress.Presets.shades_classic)
    : undefined
  let read = 0
  bar?.start(0, 0, { kind: 'users' })
  try {
    const summary = await syncFromMarqeta({
      db, client: api, dryRun, invalidate,
      onProgress: (kind: SyncKind) => { read++; bar?.update(read, { kind }) }
    })
    bar?.stop()
    printSummary(io, summary, dryRun)
    return 0
  } finally {
    bar?.stop()
    await api.close()
    await pool.end()
    redis?.disconnect()
  }
}

/** Redis for cache invalidation, best effort: without it, running instances keep cached states until their TTL. */
async function connectRedis (io: Io, url: string): Promise<Redis | undefined> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, enableOfflineQueue: false, connectTimeout: 1000, retryStrategy: () => null })
  redis.on('error', () => {})
  try {
    await redis.connect()
    return redis
  } catch {
    io.err('Redis unreachable: cached contexts are not invalidated (they expire with their TTL; PostgreSQL re-checks states)')
    redis.disconnect()
    return undefined
  }
}

function printSummary (io: Io, summary: SyncSummary, dryRun: boolean): void {
  io.out(dryRun ? 'dry run: nothing written; would change:' : 'sync done:')
  for (const kind of ['users', 'cards', 'velocity_controls', 'auth_controls'] as const) {
    const c = summary[kind]
    io.out(`  ${kind.padEnd(18)} created ${c.created}, updated ${c.updated}, unchanged ${c.unchanged}, skipped ${c.skipped}`)
  }
  for (const reason of summary.skipped) io.out(`  skipped ${reason}`)
  io.out('  balances: not touched (they are this gateway\'s ledger, not Marqeta\'s)')
}

const AMOUNT = /^\d{1,10}(\.\d{1,2})?$/

async function runSimulate (io: Io, rest: string[], values: Record<string, string | boolean | undefined>, dryRun: boolean): Promise<number> {
  const [kind, ...extra] = rest
  noMore(extra)
  if (kind !== 'authorize' && kind !== 'clear') throw new UsageError(kind === undefined ? 'simulate needs authorize or clear' : `unknown simulation ${kind}`)
  const amountText = values.amount
  if (typeof amountText !== 'string' || !AMOUNT.test(amountText)) throw new UsageError('--amount <decimal> is required (e.g. 12.50)')
  // Marqeta takes a JSON decimal; a number read from at most two decimals prints back exactly the same digits.
  const amount = Number(amountText)
  let request: { kind: 'authorize', path: string, body: SimulateAuthorization } | { kind: 'clear', path: string, body: SimulateClearing }
  if (kind === 'authorize') {
    if (typeof values.card !== 'string') throw new UsageError('simulate authorize needs --card <token>')
    request = {
      kind,
      path: '/simulations/cardtransactions/authorization',
      body: {
        card_token: values.card,
        amount,
        ...(typeof values.mid === 'string' ? { mid: values.mid } : {}),
        ...(typeof values.mcc === 'string' ? { card_acceptor: { mcc: values.mcc } } : {}),
        ...(typeof values.currency === 'string' ? { currency_code: values.currency } : {})
      }
    }
  } else {
    if (typeof values.transaction !== 'string') throw new UsageError('simulate clear needs --transaction <authorization transaction token>')
    request = { kind, path: '/simulations/cardtransactions/authorization.clearing', body: { preceding_related_transaction_token: values.transaction, amount } }
  }
  if (dryRun) {
    io.out(`dry run: would POST ${request.path} ${JSON.stringify(request.body)}`)
    return 0
  }
  const marqeta = loadMarqetaConfig(io.env)
  const api = client(io, marqeta)
  try {
    const result = request.kind === 'authorize' ? await api.simulateAuthorization(request.body) : await api.simulateClearing(request.body)
    const t = result.transaction ?? {}
    io.out(`transaction ${String(t.token)}: ${String(t.type)} ${String(t.state)}` +
      (t.response?.code !== undefined ? `, response ${t.response.code}${t.response.memo !== undefined ? ` ${t.response.memo}` : ''}` : ''))
    if (kind === 'authorize') io.out(`to clear it: npm run marqeta -- simulate clear --transaction ${String(t.token)} --amount ${amountText}`)
    return 0
  } finally {
    await api.close()
  }
}

const isEntryPoint = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href
if (isEntryPoint) {
  main(process.argv.slice(2), {
    out: (line) => process.stdout.write(`${line}\n`),
    err: (line) => process.stderr.write(`${line}\n`),
    progress: process.stderr.isTTY === true
  }).then((code) => { process.exitCode = code }, (err) => {
    process.stderr.write(`${(err as Error).stack ?? String(err)}\n`)
    process.exitCode = 1
  })
}
