import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type pg from 'pg'
import { jitMessage, merchants } from './messages.js'

/**
 * pgbench rows of `npm run bench` (DESIGN §10): the bare conditional UPDATE the routes are compared with, and
 * jit_decide itself with no service in front, one hold per call and ten per call, with and without the archived
 * Marqeta message in the decision row. Around each decision run, the heap rows written (pg_stat_user_tables
 * n_tup_ins + n_tup_upd, per table) and the WAL (pg_current_wal_lsn) are divided by the decisions made.
 */

const run = promisify(execFile)

export interface PgbenchScript {
  /** The script's text (pgbench's custom script syntax); `@@RUN@@` is replaced by an id unique to each pgbench run. */
  text: string
  /** Decisions per transaction (0: not a decision script). */
  perCall: number
}

export interface WriteStats {
  decisions: number
  rowsPerDecision: number
  walBytesPerDecision: number
  /** Heap rows inserted + updated per decision, by table. */
  rowsByTable: Record<string, number>
}

export interface PgbenchResult {
  tps: number
  /** tps x decisions per call (tps for the UPDATE). */
  perSecond: number
  transactions: number
  latencyAvgMs: number
  failed: number
  writes?: WriteStats
}

/** The reference: the same conditional UPDATE of a random row as POST /bench/pg. */
export function updateScript (table: string, rows: number): PgbenchScript {
  return { text: `\\set id random(1, ${rows})\nUPDATE ${table} SET balance = balance - 1 WHERE id = :id AND balance >= 1;\n`, perCall: 0 }
}

export interface DecideOptions {
  /** Every token this script makes starts with it, then an id unique to the pgbench run. */
  tokenPrefix: string
  /** Seeded users `${userPrefix}${i}` for i in [0, users), each with a card `${cardPrefix}${i}-0` (bench/seed.ts). */
  userPrefix: string
  cardPrefix: string
  users: number
  perCall: number
  /** Keep the whole Marqeta message in the item (the decision row's `request`), as the JIT route does. */
  withRequest: boolean
}

// Markers in the item's JSON text that the script replaces: the item's JIT token, the user's number. Never JSON-escaped.
const TOKEN = '@@TOKEN@@'
const USER = '@@USER@@'

/**
 * One approved hold of 1.00 USD per item (no velocity control, nothing declined), for a random seeded user; the item as
 * src/jit/decide.ts builds it. The JIT token is unique per item: the prefix, the pgbench run, the client, a per-client
 * counter and the item's position.
 */
export function decideScript (o: DecideOptions): PgbenchScript {
  const item = {
    echo: { token: TOKEN, method: 'pgfs.authorization', user_token: USER, acting_user_token: USER },
    mode: 'decide',
    amount_text: '1',
    exponent: 2,
    currency_code: 'USD',
    card_token: `${USER}-card`,
    transaction_token: `t${TOKEN}`,
    effect: {
      kind: 'hold', effect_key: `${TOKEN}:hold`, user_token: USER, currency_code: 'USD', amount_minor: '100', jit_token: TOKEN,
      transaction_token: `t${TOKEN}`, card_token: `${USER}-card`, mcc: merchants[0].mcc, mid: merchants[0].mid, hold_expiration_days: 7
    },
    request: o.withRequest
      ? jitMessage({ method: 'pgfs.authorization', jitToken: TOKEN, transactionToken: `t${TOKEN}`, userToken: USER, cardToken: `${USER}-card`, amountMinor: 100 })
      : undefined
  }
  // pgbench reads `:name` anywhere in a command as a variable, inside string literals too: a value after a key gets a
  // space, and a colon inside a string value (`<token>:hold`) is written as the JSON escape jsonb reads back as ':'.
  const json = JSON.stringify(item)
    .replace(/":(?=[A-Za-z_])/g, '": ')
    .replace(/:(?=[A-Za-z_])/g, '\\u003a')
    // The card is the user's first card: `<card prefix><i>-0` for user `<user prefix><i>`.
    .replaceAll(`${USER}-card`, `${o.cardPrefix}@@U@@-0`)
    .replaceAll(USER, `${o.userPrefix}@@U@@`)
  const literal = `'${json.replaceAll("'", "''")}'`
  const lines = ['\\set n :n + 1']
  const items: string[] = []
  for (let k = 1; k <= o.perCall; k++) {
    lines.push(`\\set u${k} random(0, ${o.users - 1})`)
    // Two replace() calls per item rather than a variable at every place a token appears: pgbench binds at most 255.
    items.push(`replace(replace(${literal}, '${TOKEN}', '${o.tokenPrefix}@@RUN@@-' || :client_id::text || '-' || :n::text || '-${k}'), '@@U@@', :u${k}::text)::jsonb`)
  }
  lines.push(`SELECT * FROM jit_decide(ARRAY[${items.join(', ')}]::jsonb[]);`)
  return { text: lines.join('\n') + '\n', perCall: o.perCall }
}

interface Counters { wal: string, rows: Map<string, number>, decisions: number }

async function counters (pool: pg.Pool): Promise<Counters> {
  const client = await pool.connect()
  try {
    // Statistics are read once per transaction unless the snapshot is cleared.
    await client.query('SELECT pg_stat_clear_snapshot()')
    const { rows } = await client.query<{ relname: string, n: string }>(
      'SELECT relname, (n_tup_ins + n_tup_upd)::text AS n FROM pg_stat_user_tables')
    const wal = (await client.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0].lsn
    const byTable = new Map(rows.map((r) => [r.relname, Number(r.n)]))
    const decisions = (await client.query<{ n: string }>(
      `SELECT n_tup_ins::text AS n FROM pg_stat_user_tables WHERE relname = 'decisions' AND schemaname = current_schema()`)).rows[0]?.n
    return { wal, rows: byTable, decisions: Number(decisions ?? 0) }
  } finally {
    client.release()
  }
}

const totalRows = (c: Counters): number => [...c.rows.values()].reduce((a, n) => a + n, 0)

/** The counters once earlier work's statistics have arrived (a backend reports within a second of going idle), or after 3 s. */
async function quietCounters (pool: pg.Pool): Promise<Counters> {
  let last = await counters(pool)
  const deadline = performance.now() + 3000
  while (performance.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 600))
    const now = await counters(pool)
    if (totalRows(now) === totalRows(last)) return now
    last = now
  }
  return last
}

async function writeStats (pool: pg.Pool, before: Counters, decisions: number): Promise<WriteStats> {
  // pgbench's backends report their statistics when they exit, shortly after pgbench returns: wait for them.
  let after = await counters(pool)
  const deadline = performance.now() + 5000
  while (after.decisions - before.decisions < decisions && performance.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100))
    after = await counters(pool)
  }
  const { rows } = await pool.query<{ bytes: string }>('SELECT pg_wal_lsn_diff($1, $2)::text AS bytes', [after.wal, before.wal])
  const rowsByTable: Record<string, number> = {}
  let total = 0
  for (const [table, n] of after.rows) {
    const delta = n - (before.rows.get(table) ?? 0)
    if (delta <= 0) continue
    rowsByTable[table] = delta / decisions
    total += delta
  }
  return { decisions, rowsPerDecision: total / decisions, walBytesPerDecision: Number(rows[0].bytes) / decisions, rowsByTable }
}

export interface PgbenchRun { databaseUrl: string, clients: number, durationS: number }

/** Runs `script` with pgbench (prepared statements, as the service's named statements), measuring writes for a decision script. */
export async function pgbench (pool: pg.Pool, script: PgbenchScript, o: PgbenchRun): Promise<PgbenchResult> {
  const dir = await mkdtemp(join(tmpdir(), 'pgbench-'))
  const file = join(dir, 'script.sql')
  await writeFile(file, script.text.replaceAll('@@RUN@@', randomBytes(3).toString('hex')))
  const before = script.perCall > 0 ? await quietCounters(pool) : undefined
  // The service's connections run with PostgreSQL's JIT compiler off (plugins/postgres.ts): so do these.
  const env = { ...process.env, PGOPTIONS: `${process.env.PGOPTIONS ?? ''} -c jit=off`.trim() }
  const { stdout } = await run('pgbench', ['-n', '-M', 'prepared', '-f', file, '-D', 'n=0', '-c', String(o.clients), '-j', String(Math.min(o.clients, 4)),
    '-T', String(Math.max(1, Math.round(o.durationS))), o.databaseUrl], { env, maxBuffer: 16 * 1024 * 1024 })
  const field = (re: RegExp): number => {
    const m = re.exec(stdout)
    if (m === null) throw new Error(`pgbench output without ${re.source}:\n${stdout}`)
    return Number(m[1])
  }
  const tps = field(/tps = ([\d.]+) \(without initial connection time\)/)
  const transactions = field(/number of transactions actually processed: (\d+)/)
  const failed = /number of failed transactions: (\d+)/.exec(stdout)
  const result: PgbenchResult = {
    tps,
    perSecond: tps * Math.max(1, script.perCall),
    transactions,
    latencyAvgMs: field(/latency average = ([\d.]+) ms/),
    failed: failed === null ? 0 : Number(failed[1])
  }
  if (before !== undefined && transactions > 0) result.writes = await writeStats(pool, before, transactions * script.perCall)
  return result
}
