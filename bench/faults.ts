/**
 * `npm run faults` (`npm run faults:ci` for the short version): a fault-injection run against a real service on this
 * machine. It starts the built service (`node dist/src/server.js`) in its own process group, on a free port, with a
 * fresh database; then, under steady traffic (the simulator, bench/simulate.ts, in a child process, plus this run's own
 * recorded JIT requests and webhooks, bench/fault-traffic.ts), it stops and restarts PostgreSQL, Redis and RabbitMQ in
 * turn and kills the service with SIGKILL mid-load (restarting it as a supervisor would). After each fault it checks:
 *   - recovery: /ready answers 200 again (time reported) and /health shows every store up, with no hand restart
 *     (same process) except after the kill;
 *   - every JIT answer given (200 or 402) is given again, byte for byte, when the token is replayed;
 *   - every webhook answered 200 is applied exactly once (its transfer under its effect key, its hold resolved);
 *   - every decision's event is published, once after deduplication by message id (a durable copy of every event in the
 *     run's vhost, bench/fault-events.ts, read after each fault: a broker restart or a kill loses none);
 *   - every decision is archived (GET /v1/transactions/:token lists its messages). The embedded MongoDB lives in
 *     the service's process and saves a snapshot every EMBEDDED_MONGO_PERSIST_MS, so a kill loses what it archived
 *     since the last one: those are counted and reported, not failed;
 *   - the ledger audit (src/audit.ts) is clean; the simulator's reconciliation matches every balance to the cent.
 * It prints a table, writes bench/results/faults-latest.json, and exits 1 on any violation. Every store it stopped is
 * started again in a finally block and on SIGINT/SIGTERM.
 *
 * The stores are controlled by shell commands, the TOOLING.md ones by default; point them (and the URLs) at private
 * instances to try the run without disturbing anyone:
 *   FAULTS_DATABASE_URL   the service's database, dropped and created afresh (default postgres://postgres@127.0.0.1:5432/faults)
 *   FAULTS_REDIS_URL      default redis://127.0.0.1:6379
 *   FAULTS_RABBITMQ_URL   default amqp://guest:guest@127.0.0.1:5672/faults (its own vhost: the run's queues are its own)
 *   FAULTS_PG_STOP / FAULTS_PG_START, FAULTS_REDIS_STOP / FAULTS_REDIS_START, FAULTS_RABBIT_STOP / FAULTS_RABBIT_START
 *   FAULTS_RABBITMQCTL    the rabbitmqctl command used by the RabbitMQ defaults and the vhost setup (default rabbitmqctl)
 *   FAULTS_RABBIT_PREPARE shell command creating the vhost afresh (default: delete_vhost, add_vhost, set_permissions)
 * Options: --short (CI: shorter outages and tails), --only postgres,redis,rabbitmq,kill, --rate N (simulator req/s),
 * --pg-down S (PostgreSQL outage, default 20, short 12).
 */
import { parseArgs } from 'node:util'
import { spawn, type ChildProcess } from 'node:child_process'
import { readdirSync, readFileSync, existsSync, createWriteStream } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import amqp from 'amqplib'
import { redactUrl } from '../src/config.js'
import { auditSnapshot } from '../src/audit.js'
import { decimalText, toMinor } from './messages.js'
import { textTable } from './stats.js'
import { ServiceProcess, StoreControl, sh, type Store } from './fault-control.js'
import { EventLog, checkEvents, prepareEventLog, removeEventLog } from './fault-events.js'
import {
  TrackedTraffic, checkArchive, checkWebhooks, credentialsFromEnv, replayAnswers, sleep,
  type AcceptedWebhook, type AnsweredJit, type CheckResult
} from './fault-traffic.js'

type FaultName = 'postgres' | 'redis' | 'rabbitmq' | 'kill'
const allFaults: FaultName[] = ['postgres', 'redis', 'rabbitmq', 'kill']

const { values: args } = parseArgs({
  options: {
    short: { type: 'boolean', default: false },
    only: { type: 'string' },
    rate: { type: 'string' },
    'pg-down': { type: 'string' }
  }
})
const short = args.short === true
const faults = args.only === undefined ? allFaults : args.only.split(',').map((f) => f.trim()) as FaultName[]
for (const f of faults) if (!allFaults.includes(f)) fail(`--only: unknown fault ${f} (one of ${allFaults.join(', ')})`)
const simRate = Number(args.rate ?? (short ? 20 : 30))
const trackedRate = short ? 8 : 12
const leadS = 4
const tailS = short ? 8 : 15
const downS: Record<FaultName, number> = { postgres: Number(args['pg-down'] ?? (short ? 12 : 20)), redis: short ? 4 : 8, rabbitmq: short ? 4 : 8, kill: 1 }
/** How long effects and archives may take to catch up after the traffic stops. */
const settleMs = short ? 40_000 : 60_000
const readyTimeoutMs = 90_000

function fail (message: string): never {
  console.error(`faults: ${message}`)
  process.exit(2)
}

// ---------------------------------------------------------------------------------------------------------------
// Configuration of the stores and the service

const env = process.env
const pgVersion = env.FAULTS_PG_VERSION ?? (existsSync('/etc/postgresql') ? readdirSync('/etc/postgresql').sort().at(-1) : undefined) ?? '15'
const databaseUrl = env.FAULTS_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/faults'
const redisUrl = env.FAULTS_REDIS_URL ?? 'redis://127.0.0.1:6379'
const rabbitUrl = env.FAULTS_RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672/faults'
const ctl = env.FAULTS_RABBITMQCTL ?? 'rabbitmqctl'
const rabbit = new URL(rabbitUrl)
const vhost = decodeURIComponent(rabbit.pathname.slice(1))
const rabbitUser = decodeURIComponent(rabbit.username || 'guest')
const rabbitPrepare = env.FAULTS_RABBIT_PREPARE ??
  (vhost === '' || vhost === '/' ? '' : `${ctl} -q delete_vhost '${vhost}' >/dev/null 2>&1; ${ctl} -q add_vhost '${vhost}' && ${ctl} -q set_permissions -p '${vhost}' '${rabbitUser}' '.*' '.*' '.*'`)
const stores: Record<Exclude<FaultName, 'kill'>, Store> = {
  postgres: {
    name: 'postgres',
    stop: env.FAULTS_PG_STOP ?? `pg_ctlcluster --skip-systemctl-redirect ${pgVersion} main stop -m fast`,
    start: env.FAULTS_PG_START ?? `pg_ctlcluster --skip-systemctl-redirect ${pgVersion} main start`
  },
  redis: {
    name: 'redis',
    stop: env.FAULTS_REDIS_STOP ?? 'redis-cli -p 6379 shutdown nosave',
    start: env.FAULTS_REDIS_START ?? 'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log'
  },
  rabbitmq: {
    name: 'rabbitmq',
    stop: env.FAULTS_RABBIT_STOP ?? `${ctl} stop_app`,
    start: env.FAULTS_RABBIT_START ?? `${ctl} start_app && ${ctl} await_startup`
  }
}

const repo = fileURLToPath(new URL('../../', import.meta.url))
const resultsDir = `${repo}bench/results/`
const creds = credentialsFromEnv()
const control = new StoreControl()
let service: ServiceProcess | undefined
let simulator: ChildProcess | undefined
let pool: pg.Pool | undefined
/** Every event the relay published during the run, read from the run's durable copy after each fault. */
const eventLog = new EventLog()
const log = (line: string): void => { console.log(line) }
const seconds = (ms: number | undefined): string => ms === undefined ? '-' : (ms / 1000).toFixed(1)

// ---------------------------------------------------------------------------------------------------------------
// One phase: traffic, a fault, recovery, checks

interface SimulatorResult {
  exit: number | null
  sent: number
  statuses: Record<string, number>
  errors: Record<string, number>
  problems: string[]
  differences: Array<{ user: string, field: string, service: string, model: string }>
  audit: string
  log: string
}

interface PhaseRow {
  fault: FaultName
  downtimeMs: number
  readyMs?: number
  healthyMs?: number
  recovered: boolean
  sent: number
  outcomes: Record<string, number>
  replays: CheckResult
  webhooks: CheckResult
  archive: CheckResult & { lost: number }
  events: CheckResult
  audit: { ok: boolean, note: string }
  simulator: SimulatorResult
  moneyLostMinor: bigint
  dlq?: number
  failures: string[]
  notes: string[]
  elapsedS: number
}

function startSimulator (durationS: number, phase: string): { done: Promise<SimulatorResult>, started: Promise<void> } {
  const logPath = `/tmp/faults-simulate-${phase}.log`
  const out = createWriteStream(logPath)
  const child = spawn(process.execPath, [
    `${repo}dist/bench/simulate.js`, '--url', service!.url, '--users', short ? '20' : '30', '--rate', String(simRate),
    '--duration', String(durationS), '--settle-timeout', String(settleMs / 1000 + 30), '--database-url', databaseUrl
  ], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...env, DATABASE_URL: databaseUrl } })
  simulator = child
  let runId: string | undefined
  let markStarted: () => void
  const started = new Promise<void>((resolve) => { markStarted = resolve })
  child.stdout!.on('data', (d: Buffer) => {
    const text = d.toString()
    out.write(text)
    runId ??= /simulator run (\w+)/.exec(text)?.[1]
    if (/^created \d+ users/m.test(text)) markStarted()
  })
  child.stderr!.on('data', (d: Buffer) => out.write(d))
  const done = new Promise<SimulatorResult>((resolve) => {
    child.on('close', (exit) => {
      markStarted()
      out.end()
      simulator = undefined
      const result: SimulatorResult = { exit, sent: 0, statuses: {}, errors: {}, problems: [], differences: [], audit: 'not run', log: logPath }
      const reportPath = `${resultsDir}simulate-latest.json`
      try {
        const report = JSON.parse(readFileSync(reportPath, 'utf8'))
        if (report.run_id !== runId) throw new Error(`${reportPath} is not this run's (${report.run_id} vs ${runId})`)
        result.sent = Object.values(report.stats.actions as Record<string, number>).reduce((a, b) => a + b, 0)
        result.statuses = report.stats.statuses
        result.errors = report.stats.errors
        result.problems = report.problems
        result.differences = report.reconciliation.differences
        result.audit = report.audit.note
      } catch (err) {
        result.problems.push(`no simulator report: ${(err as Error).message}; see ${logPath}`)
      }
      resolve(result)
    })
  })
  return { done, started }
}

async function runPhase (fault: FaultName, traffic: TrackedTraffic): Promise<PhaseRow> {
  const phaseStarted = performance.now()
  const failures: string[] = []
  const notes: string[] = []
  log(`\n== ${fault}: ${fault === 'kill' ? 'kill -9 of the service mid-load, then a restart' : `${fault} stopped for ${downS[fault]} s`} ==`)
  const pid = service!.pid
  const sim = startSimulator(leadS + downS[fault] + tailS + (fault === 'kill' ? 5 : 0), fault)
  await sim.started
  traffic.begin()
  traffic.generation = service!.generation
  traffic.start(trackedRate)
  await sleep(leadS * 1000)

  let downtimeMs: number
  let readyMs: number | undefined
  let healthyMs: number | undefined
  let recovered = true
  if (fault === 'kill') {
    const killedAt = performance.now()
    await service!.kill9()
    log(`killed the service (pid ${pid}) with SIGKILL; restarting it in ${downS.kill} s as a supervisor would`)
    await sleep(downS.kill * 1000)
    service!.start()
    traffic.generation = service!.generation
    readyMs = await service!.waitReady(readyTimeoutMs)
    downtimeMs = performance.now() - killedAt
    if (readyMs === undefined) { recovered = false; failures.push(`the restarted service was not ready within ${readyTimeoutMs / 1000} s:\n${service!.tail()}`) }
  } else {
    const store = stores[fault]
    const stoppedAt = performance.now()
    const stopped = await control.stop(store)
    if (stopped.code !== 0) failures.push(`stopping ${fault} failed (exit ${stopped.code}): ${stopped.output.slice(-300)}`)
    await sleep(Math.max(0, downS[fault] * 1000 - (performance.now() - stoppedAt)))
    const startedAgain = await control.start(store)
    downtimeMs = performance.now() - stoppedAt
    if (startedAgain.code !== 0) failures.push(`starting ${fault} again failed (exit ${startedAgain.code}): ${startedAgain.output.slice(-300)}`)
    log(`${fault} was down for ${seconds(downtimeMs)} s; waiting for the service to recover by itself`)
    readyMs = await service!.waitReady(readyTimeoutMs)
    if (!service!.alive) {
      // A crash is a failure of this fault; the harness then restarts it, as a supervisor would, for the next ones.
      recovered = false
      failures.push(`the service (pid ${pid}) died during the ${fault} outage (${service!.exitStatus ?? 'unknown status'}); last lines of its log:\n${service!.tail(8)}`)
      service!.start()
      traffic.generation = service!.generation
      readyMs = await service!.waitReady(readyTimeoutMs)
      log(`the service died during the ${fault} outage; restarted by the harness (ready ${seconds(readyMs)} s later)`)
    } else if (readyMs === undefined) {
      recovered = false
      failures.push(`not ready within ${readyTimeoutMs / 1000} s after ${fault} came back`)
    }
  }
  const healthStarted = performance.now()
  const down = await service!.waitHealthy(60_000)
  healthyMs = performance.now() - healthStarted
  if (down.length > 0) { recovered = false; healthyMs = undefined; failures.push(`/health still reports ${down.join(', ')} down 60 s after ${fault} came back`) }
  if (fault !== 'kill' && recovered && (!service!.alive || service!.pid !== pid)) {
    recovered = false
    failures.push(`the service process ${pid} did not survive the ${fault} outage (${service!.alive ? `now pid ${service!.pid}` : 'exited'}):\n${service!.tail(8)}`)
  }
  log(`ready ${seconds(readyMs)} s after ${fault === 'kill' ? 'the restart' : `${fault} came back`}; every store up on /health ${seconds(healthyMs)} s later`)

  // Steady traffic after the recovery too, then the simulator's own settle, reconciliation and audit.
  const tailUntil = performance.now() + tailS * 1000
  await sleep(Math.max(0, tailUntil - performance.now()))
  await traffic.stop(settleMs)
  const simResult = await sim.done
  log(`simulator exited ${simResult.exit}: ${simResult.sent} operations, ${simResult.problems.length} problems, ${simResult.differences.length} balance differences, ${simResult.audit}`)

  const answered = [...traffic.answered]
  const accepted: AcceptedWebhook[] = [...traffic.accepted]
  for (const w of traffic.unaccepted) failures.push(`webhook ${w} never answered 200 within ${settleMs / 1000} s of resends after the traffic stopped`)
  const deadline = Date.now() + settleMs
  const webhooks = await checkWebhooks(pool!, accepted, deadline)
  const replays = await replayAnswers(service!.url, creds, answered)
  // A decision answered by a process that then died may have been archived after the embedded MongoDB's last snapshot.
  const lostOk = (a: AnsweredJit): boolean => a.generation < service!.generation
  const archive = await checkArchive(service!.url, creds, answered, accepted, deadline, lostOk)
  if (archive.lost > 0) {
    notes.push(`${archive.lost} of ${answered.filter(lostOk).length} decisions answered before the process died have no archive: archived after the embedded MongoDB's last snapshot before the kill (the development server's documented loss; not counted as a failure)`)
  }
  const events = await checkEvents(eventLog, rabbitUrl, answered, deadline)
  const audit = await auditDatabase()
  const dlq = await deadLetters()

  failures.push(...replays.failures, ...webhooks.failures, ...archive.failures, ...events.failures)
  if (!audit.ok) failures.push(audit.note)
  if (dlq !== undefined && dlq > deadLettersBefore) notes.push(`${dlq - deadLettersBefore} new message(s) in webhooks.process.dlq (${dlq} in all)`)
  if (dlq !== undefined) deadLettersBefore = dlq
  for (const p of simResult.problems) failures.push(`simulator: ${p}`)
  for (const d of simResult.differences) failures.push(`simulator reconciliation: ${d.user} ${d.field}: service ${d.service}, model ${d.model}`)
  if (simResult.exit !== 0 && simResult.problems.length === 0 && simResult.differences.length === 0) failures.push(`simulator exited ${simResult.exit} (see ${simResult.log})`)

  const unapplied = new Set(webhooks.failures.map((f) => /^webhook \w+ (\S+)/.exec(f)?.[1]))
  let moneyLostMinor = accepted.filter((w) => unapplied.has(w.effectKey)).reduce((a, w) => a + w.amountMinor, 0n)
  for (const d of simResult.differences) {
    if (d.field !== 'ledger_balance' && d.field !== 'pending_holds') continue
    try {
      const diff = toMinor(d.service) - toMinor(d.model)
      moneyLostMinor += diff < 0n ? -diff : diff
    } catch {}
  }

  const outcomes: Record<string, number> = { ...traffic.outcomes }
  for (const [k, v] of Object.entries(simResult.statuses)) outcomes[`sim ${k}`] = (outcomes[`sim ${k}`] ?? 0) + v
  for (const [k, v] of Object.entries(simResult.errors)) outcomes[`sim retried ${k}`] = v
  return {
    fault,
    downtimeMs,
    readyMs,
    healthyMs,
    recovered,
    sent: traffic.sent + simResult.sent,
    outcomes,
    replays,
    webhooks,
    archive,
    events,
    audit,
    simulator: simResult,
    moneyLostMinor,
    dlq,
    failures,
    notes,
    elapsedS: (performance.now() - phaseStarted) / 1000
  }
}

async function auditDatabase (): Promise<{ ok: boolean, note: string }> {
  try {
    const client = await pool!.connect()
    try {
      const { violations, checked } = await auditSnapshot(client)
      const scope = `${checked.accounts} accounts, ${checked.holds} holds, ${checked.transfers} transfers`
      if (violations.length === 0) return { ok: true, note: `audit clean (${scope})` }
      return { ok: false, note: `audit: ${violations.length} violation(s) in ${scope}: ${violations.slice(0, 10).map((v) => `[${v.check}] ${v.message}`).join('; ')}` }
    } finally {
      client.release()
    }
  } catch (err) {
    return { ok: false, note: `audit could not run: ${(err as Error).message}` }
  }
}

let deadLettersBefore = 0
async function deadLetters (): Promise<number | undefined> {
  try {
    const connection = await amqp.connect(rabbitUrl)
    try {
      const channel = await connection.createChannel()
      return (await channel.checkQueue('webhooks.process.dlq')).messageCount
    } finally {
      await connection.close().catch(() => {})
    }
  } catch {
    return undefined
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The run

async function prepare (): Promise<void> {
  const target = new URL(databaseUrl)
  const name = decodeURIComponent(target.pathname.slice(1))
  if (!/^[a-z_][a-z0-9_]*$/.test(name) || ['postgres', 'test', 'template0', 'template1'].includes(name)) fail(`FAULTS_DATABASE_URL must name a scratch database of its own, not "${name}"`)
  const admin = new URL(databaseUrl)
  admin.pathname = '/postgres'
  const client = new pg.Client({ connectionString: admin.toString() })
  await client.connect()
  try {
    await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
    await client.query(`CREATE DATABASE ${name}`)
  } finally {
    await client.end()
  }
  if (rabbitPrepare !== '') {
    const prepared = await sh(rabbitPrepare)
    if (prepared.code !== 0) throw new Error(`cannot prepare RabbitMQ vhost ${vhost} (${rabbitPrepare}): ${prepared.output.slice(-300)}`)
  }
  await prepareEventLog(rabbitUrl)
  pool = new pg.Pool({ connectionString: databaseUrl, max: 3, connectionTimeoutMillis: 5000 })
  // Idle clients die with every PostgreSQL restart; the pool replaces them.
  pool.on('error', () => {})
}

let cleaning: Promise<boolean> | undefined
function cleanup (): Promise<boolean> {
  cleaning ??= (async () => {
    simulator?.kill('SIGTERM')
    await service?.stop(10_000).catch(() => {})
    const ok = await control.restoreAll(log)
    await removeEventLog(rabbitUrl).catch(() => {})
    await pool?.end().catch(() => {})
    return ok
  })()
  return cleaning
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    console.error(`\n${signal}: stopping the service and restarting every store this run stopped`)
    void cleanup().finally(() => process.exit(130))
  })
}

function statusSummary (outcomes: Record<string, number>): string {
  // One line per row: the final statuses of both traffic sources, summed over routes.
  const sum: Record<string, number> = {}
  for (const [k, v] of Object.entries(outcomes)) {
    if (k.startsWith('sim retried')) { sum.retried = (sum.retried ?? 0) + v; continue }
    const status = k.split(' ').at(-1)!
    sum[status] = (sum[status] ?? 0) + v
  }
  return Object.entries(sum).sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => `${k}:${v}`).join(' ')
}

async function main (): Promise<number> {
  const runStarted = performance.now()
  service = await ServiceProcess.onFreePort(`${repo}dist/src/server.js`, repo, {
    ...env,
    DATABASE_URL: databaseUrl,
    REDIS_URL: redisUrl,
    RABBITMQ_URL: rabbitUrl,
    MONGO_URL: 'embedded',
    // Its own snapshot file, kept across the kill and restart of this run, never the developer's archive.
    EMBEDDED_MONGO_PATH: `/tmp/faults-embedded-mongo-${process.pid}.json`,
    LOG_LEVEL: env.FAULTS_LOG_LEVEL ?? 'warn'
  }, 'PORT', 'faults-service')
  const url = service.url
  log(`fault run${short ? ' (short)' : ''}: ${faults.join(', ')}; service on ${url}, database ${redactUrl(databaseUrl)}, Redis ${redisUrl}, RabbitMQ ${redactUrl(rabbitUrl)}`)
  for (const [name, store] of Object.entries(stores)) if (faults.includes(name as FaultName)) log(`  ${name}: stop \`${store.stop}\`, start \`${store.start}\``)
  await prepare()
  await mkdir(resultsDir, { recursive: true })
  service.start()
  const bootMs = await service.waitReady(readyTimeoutMs)
  if (bootMs === undefined) throw new Error(`the service did not become ready:\n${service.tail()}`)
  log(`service ready in ${seconds(bootMs)} s (pid ${service.pid}, log ${service.logPath})`)

  const traffic = new TrackedTraffic(url, creds)
  await traffic.setup()
  const rows: PhaseRow[] = []
  const everything: AnsweredJit[] = []
  for (const fault of faults) {
    const row = await runPhase(fault, traffic)
    everything.push(...traffic.answered)
    rows.push(row)
    for (const f of row.failures.slice(0, 25)) log(`  FAIL ${f}`)
    if (row.failures.length > 25) log(`  ... and ${row.failures.length - 25} more`)
    for (const n of row.notes) log(`  note: ${n}`)
  }
  // After every fault, the kill included: each answer of the whole run still holds.
  const finalReplays = await replayAnswers(url, creds, everything)
  const finalAudit = await auditDatabase()
  const elapsedS = (performance.now() - runStarted) / 1000

  const table = textTable(
    ['fault', 'down s', 'ready s', 'healthy s', 'recovered', 'sent', 'answers by status', 'replays', 'webhooks', 'archived', 'events', 'audit', 'reconciled', 'money lost', 'result'],
    rows.map((r) => [
      r.fault, seconds(r.downtimeMs), seconds(r.readyMs), seconds(r.healthyMs), r.recovered ? 'yes' : 'NO', String(r.sent), statusSummary(r.outcomes),
      `${r.replays.checked - r.replays.failures.length}/${r.replays.checked}`,
      `${r.webhooks.checked - r.webhooks.failures.length}/${r.webhooks.checked}`,
      `${r.archive.checked - r.archive.failures.length - r.archive.lost}/${r.archive.checked}${r.archive.lost > 0 ? ` (${r.archive.lost} lost with the process)` : ''}`,
      `${r.events.checked - r.events.failures.length}/${r.events.checked}`,
      r.audit.ok ? 'clean' : 'FAILED',
      r.simulator.differences.length === 0 && r.simulator.exit === 0 ? 'to the cent' : `${r.simulator.differences.length} diffs`,
      decimalText(r.moneyLostMinor),
      r.failures.length === 0 ? 'ok' : `${r.failures.length} FAIL`
    ]))
  log(`\n${table}`)
  log(`whole run: ${finalReplays.checked - finalReplays.failures.length}/${finalReplays.checked} answers replayed identical after every fault; ` +
    `${eventLog.deliveries.size} distinct events read, ${eventLog.redelivered} of them delivered more than once (consumers dedupe by message id); ${finalAudit.note}; ${elapsedS.toFixed(0)} s`)
  for (const f of finalReplays.failures.slice(0, 20)) log(`  FAIL ${f}`)
  if (!finalAudit.ok) log(`  FAIL ${finalAudit.note}`)

  const failed = rows.some((r) => r.failures.length > 0) || finalReplays.failures.length > 0 || !finalAudit.ok
  const totalLost = rows.reduce((a, r) => a + r.moneyLostMinor, 0n)
  await writeFile(`${resultsDir}faults-latest.json`, JSON.stringify({
    finished_at: new Date().toISOString(),
    short,
    elapsed_s: Math.round(elapsedS),
    settings: { faults, down_s: downS, lead_s: leadS, tail_s: tailS, simulator_rate: simRate, tracked_rate: trackedRate },
    phases: rows.map((r) => ({
      fault: r.fault,
      downtime_s: Number(seconds(r.downtimeMs)),
      ready_s: r.readyMs === undefined ? null : Number(seconds(r.readyMs)),
      healthy_s: r.healthyMs === undefined ? null : Number(seconds(r.healthyMs)),
      recovered: r.recovered,
      sent: r.sent,
      outcomes: r.outcomes,
      replays: { checked: r.replays.checked, failed: r.replays.failures.length },
      webhooks: { checked: r.webhooks.checked, failed: r.webhooks.failures.length },
      archive: { checked: r.archive.checked, failed: r.archive.failures.length, lost_with_process: r.archive.lost },
      events: { checked: r.events.checked, failed: r.events.failures.length },
      audit: r.audit.note,
      reconciliation_differences: r.simulator.differences.length,
      money_lost: decimalText(r.moneyLostMinor),
      dead_letters: r.dlq ?? null,
      failures: r.failures,
      notes: r.notes,
      elapsed_s: Math.round(r.elapsedS)
    })),
    final: { replays: finalReplays.checked, replay_failures: finalReplays.failures, audit: finalAudit.note, events: eventLog.deliveries.size, events_redelivered: eventLog.redelivered },
    money_lost: decimalText(totalLost)
  }, null, 2) + '\n')
  log(`\n${failed ? 'FAULT RUN FAILED' : 'fault run passed'}: ${rows.length} faults, money lost ${decimalText(totalLost)}; written bench/results/faults-latest.json`)
  return failed ? 1 : 0
}

let code = 1
try {
  code = await main()
} catch (err) {
  console.error(`fault run failed: ${(err as Error).stack ?? (err as Error).message}`)
  if (service !== undefined && service.generation > 0) console.error(`service log (${service.logPath}):\n${service.tail(30)}`)
} finally {
  const restored = await cleanup()
  if (!restored) code = 1
}
process.exit(code)
