/**
 * `npm run bench:latency` — JIT authorization latency under a fixed arrival rate (open loop). The built service runs
 * as a child process (`node dist/src/server.js`, its own process group, a free port on 127.0.0.1, this process's
 * environment), so the load generator never shares its event loop; the generator runs in worker threads
 * (bench/open-loop.ts). Request k is due at start + k / rate and its latency is counted from that due time.
 *
 *   --rate R --duration S   one run at R requests/s for S s, after --warmup S at the same rate (default 200/s, 10 s, 2 s)
 *   --find-capacity         doubles the rate from --start-rate (100) while p99 < --p99-target (50 ms) and no error,
 *                           then bisects between the last good and the first bad rate; --step-duration (3 s) and
 *                           --step-warmup (1 s) per step, up to --max-rate (51200)
 *   --ci                    200/s for 5 s after a 2 s warm-up; exit 1 when p99 >= 100 ms or any status other than
 *                           200/402, any request without an answer, or the whole run passes 55 s
 *   --users N (300) --cards-per-user N (2) --connections N (256 per thread) --threads N (1) --timeout-ms N (10000)
 *   --roles split|all       split (default): a ROLE=api process answers and a ROLE=worker process runs the relay, the
 *                           consumers and the archive, as DESIGN §7 deploys them; all: one ROLE=all process, as
 *                           `npm start` runs. Both processes' CPU is the service's, each in its own column.
 *   --rounds N              (with --rate) N runs of the gateway, each followed by one of the reference; medians (default 1)
 *   --no-reference          (with --rate) skip the reference: by default each run of the gateway is followed by the same
 *                           open loop against bench/latency-reference.ts (one Redis GET and one committed UPDATE per
 *                           request, nothing else), this machine's floor for a service with a durable write per request
 *
 * Writes bench/results/latest-latency.{json,md} (ci-latency.* with --ci). The service's log is in /tmp.
 */
import { parseArgs } from 'node:util'
import { Worker } from 'node:worker_threads'
import { randomBytes } from 'node:crypto'
import { mkdir, writeFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { cpus, loadavg } from 'node:os'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { loadConfig, redactUrl } from '../src/config.js'
import { seedPopulation } from './seed.js'
import { basicAuth } from './messages.js'
import { summarize, median, round, textTable, markdownTable, type LatencySummary } from './stats.js'
import { machineEnvironment } from './environment.js'
import { describeStageTails, stageTails } from './service-metrics.js'
import { cpuPerRequest, cpuSnapshot, type CpuSnapshot } from './cpu.js'
import { ServiceProcess } from './fault-control.js'
import { clock, type FromWorker, type GeneratorSetup, type OpenLoopJob, type OpenLoopResult } from './open-loop.js'

const { values: args } = parseArgs({
  options: {
    rate: { type: 'string' },
    duration: { type: 'string' },
    warmup: { type: 'string' },
    'find-capacity': { type: 'boolean', default: false },
    'start-rate': { type: 'string' },
    'max-rate': { type: 'string' },
    'p99-target': { type: 'string' },
    'step-duration': { type: 'string' },
    'step-warmup': { type: 'string' },
    ci: { type: 'boolean', default: false },
    users: { type: 'string' },
    'cards-per-user': { type: 'string' },
    connections: { type: 'string' },
    threads: { type: 'string' },
    'timeout-ms': { type: 'string' },
    roles: { type: 'string', default: 'split' },
    rounds: { type: 'string' },
    'no-reference': { type: 'boolean', default: false }
  }
})

const ci = args.ci === true
const findCapacity = args['find-capacity'] === true
const num = (v: string | undefined, fallback: number): number => {
  const n = v === undefined ? fallback : Number(v)
  if (!Number.isFinite(n) || n <= 0) { console.error(`not a positive number: ${v}`); process.exit(2) }
  return n
}
const rate = num(args.rate, 200)
const durationS = num(args.duration, ci ? 5 : 10)
const warmupS = num(args.warmup, 2)
const startRate = num(args['start-rate'], 100)
const maxRate = num(args['max-rate'], 51_200)
const p99TargetMs = num(args['p99-target'], 50)
const stepDurationS = num(args['step-duration'], 3)
const stepWarmupS = num(args['step-warmup'], 1)
const userCount = num(args.users, 300)
const cardsPerUser = num(args['cards-per-user'], 2)
const connections = num(args.connections, 256)
const threads = Math.round(num(args.threads, 1))
const timeoutMs = num(args['timeout-ms'], 10_000)
const split = args.roles === 'split'
const rounds = num(args.rounds, 1)
const withReference = !ci && !findCapacity && args['no-reference'] !== true
if (!Number.isInteger(rounds) || ((ci || findCapacity) && args.rounds !== undefined)) {
  console.error('--rounds N: a whole number, with --rate runs only (not --ci or --find-capacity)')
  process.exit(2)
}
if (!split && args.roles !== 'all') {
  console.error(`--roles ${args.roles}: split or all`)
  process.exit(2)
}
const ciBudget = { p99Ms: 100, maxTotalS: 55 }
/** Small amounts on well-funded cardholders: funds never run out, so approvals stay approvals. */
const amounts = { minMinor: 100, maxMinor: 5000, fundMinor: 1_000_000_000n }
/** Bisection stops when the bad and good rates are this close (relative). */
const capacityPrecision = 0.1
/** A send lag p99 above this means the generator, not the service, set the pace (more --threads may help). */
const lagWarnMs = 5

const repo = fileURLToPath(new URL('../../', import.meta.url))

interface RunResult {
  label: string
  targetRate: number
  durationS: number
  sent: number
  responses: number
  achievedRate: number
  latency: LatencySummary
  sendLag: LatencySummary
  statuses: Record<string, number>
  /** Statuses other than 200 and 402. */
  errorStatuses: Record<string, number>
  /** Requests without an answer, by error code. */
  errors: Record<string, number>
  /** CPU ms per response: the service's process group, the local servers (whole machine), and this bench process. */
  cpu?: CpuSnapshot & { generator: number }
  sample?: { status: number, body: string }
  /** For --find-capacity and --ci: whether the run met the target; the reasons when not. */
  failures: string[]
}

const loadAtStart = loadavg()[0]
const runStarted = performance.now()
let servicePid: number | undefined
let workerPid: number | undefined
let referencePid: number | undefined

class Generator {
  private readonly workers: Worker[] = []
  private seq = 0

  constructor (private readonly setup: GeneratorSetup, private readonly runId: string, private readonly servicePid: number, private readonly workerPid?: number) {}

  async start (): Promise<void> {
    for (let i = 0; i < threads; i++) {
      const worker = new Worker(new URL('./open-loop.js', import.meta.url), { workerData: this.setup })
      this.workers.push(worker)
      await next(worker, 'ready')
    }
  }

  /** One open-loop run; `record` false for a warm-up. */
  async run (label: string, targetRate: number, seconds: number, record: boolean): Promise<RunResult> {
    const count = Math.max(1, Math.round(targetRate * seconds))
    const tokenPrefix = `l${this.runId}r${this.seq++}-`
    const cpuBefore = record ? cpuSnapshot(this.servicePid, this.workerPid) : undefined
    const generatorBefore = process.cpuUsage()
    // A little ahead, so that each worker has its job before request 0 is due.
    const startAt = clock() + 50
    const results = await Promise.all(this.workers.map(async (worker, index) => {
      const job: OpenLoopJob = {
        startAt, rate: targetRate, count, threads, index, tokenPrefix: `${tokenPrefix}${index}-`,
        minMinor: amounts.minMinor, maxMinor: amounts.maxMinor, maxInFlight: Math.max(1000, Math.ceil(targetRate * timeoutMs / 1000 / threads))
      }
      const done = next(worker, 'done')
      worker.postMessage({ type: 'run', job })
      return ((await done) as { result: OpenLoopResult }).result
    }))
    const generatorUsage = process.cpuUsage(generatorBefore)
    const result = merge(label, targetRate, seconds, startAt, results)
    if (record) {
      const cpu = cpuPerRequest(cpuBefore, cpuSnapshot(this.servicePid, this.workerPid), result.responses)
      if (cpu !== undefined) result.cpu = { ...cpu, generator: (generatorUsage.user + generatorUsage.system) / 1000 / result.responses }
    }
    return result
  }

  async close (): Promise<void> {
    await Promise.all(this.workers.map(async (worker) => {
      const closed = next(worker, 'closed').catch(() => {})
      worker.postMessage({ type: 'close' })
      await closed
      await worker.terminate()
    }))
  }
}

/** The worker's next message of that type; a failure or an exit rejects. */
async function next (worker: Worker, type: FromWorker['type']): Promise<FromWorker> {
  return await new Promise((resolve, reject) => {
    const onMessage = (m: FromWorker): void => {
      if (m.type === type) { cleanup(); resolve(m) } else if (m.type === 'failed') { cleanup(); reject(new Error(`load generator failed: ${m.error}`)) }
    }
    const onError = (err: Error): void => { cleanup(); reject(err) }
    const onExit = (code: number): void => { cleanup(); reject(new Error(`load generator exited (${code})`)) }
    const cleanup = (): void => { worker.off('message', onMessage); worker.off('error', onError); worker.off('exit', onExit) }
    worker.on('message', onMessage)
    worker.once('error', onError)
    worker.once('exit', onExit)
  })
}

function merge (label: string, targetRate: number, seconds: number, startAt: number, parts: OpenLoopResult[]): RunResult {
  const concat = (arrays: Float64Array[]): Float64Array => {
    const all = new Float64Array(arrays.reduce((n, a) => n + a.length, 0))
    let at = 0
    for (const a of arrays) { all.set(a, at); at += a.length }
    return all
  }
  const add = (into: Record<string, number>, from: Record<string, number>): void => {
    for (const [k, n] of Object.entries(from)) into[k] = (into[k] ?? 0) + n
  }
  const statuses: Record<string, number> = {}
  const errors: Record<string, number> = {}
  for (const p of parts) { add(statuses, p.statuses); add(errors, p.errors) }
  const responses = parts.reduce((n, p) => n + p.responses, 0)
  const lastAt = Math.max(...parts.map((p) => p.lastAt))
  // Responses over the schedule, or over the time until the last answer when the service fell behind.
  const elapsedS = Math.max(seconds, (lastAt - startAt) / 1000)
  return {
    label,
    targetRate,
    durationS: seconds,
    sent: parts.reduce((n, p) => n + p.sent, 0),
    responses,
    achievedRate: responses / elapsedS,
    latency: summarize(concat(parts.map((p) => p.latencies))),
    sendLag: summarize(concat(parts.map((p) => p.sendLags))),
    statuses,
    errorStatuses: Object.fromEntries(Object.entries(statuses).filter(([code]) => code !== '200' && code !== '402')),
    errors,
    sample: parts.find((p) => p.sample !== undefined)?.sample,
    failures: []
  }
}

/** Why a run misses the target (empty when it meets it). */
function judge (r: RunResult, p99LimitMs: number): string[] {
  const failures: string[] = []
  if (r.responses === 0) failures.push('no response at all')
  else if (!(r.latency.p99 < p99LimitMs)) failures.push(`p99 ${r.latency.p99.toFixed(2)} ms >= ${p99LimitMs} ms`)
  if (Object.keys(r.errorStatuses).length > 0) failures.push(`statuses other than 200/402: ${JSON.stringify(r.errorStatuses)}${r.sample !== undefined ? ` e.g. ${JSON.stringify(r.sample)}` : ''}`)
  if (Object.keys(r.errors).length > 0) failures.push(`requests without an answer: ${JSON.stringify(r.errors)}`)
  return failures
}

function describe (r: RunResult): string {
  const statuses = Object.entries(r.statuses).map(([k, n]) => `${k}:${n}`).join(' ')
  const errors = Object.entries(r.errors).map(([k, n]) => `${k}:${n}`).join(' ')
  return `${r.label}: ${r.targetRate}/s for ${r.durationS} s -> ${r.achievedRate.toFixed(0)}/s, p50 ${r.latency.p50.toFixed(2)} p99 ${r.latency.p99.toFixed(2)} ` +
    `p999 ${r.latency.p999.toFixed(2)} max ${r.latency.max.toFixed(2)} ms, send lag p99 ${r.sendLag.p99.toFixed(2)} max ${r.sendLag.max.toFixed(2)} ms, ` +
    `${statuses}${errors !== '' ? `, no answer ${errors}` : ''}${r.cpu !== undefined ? `, CPU ms/req ${cpuText(r.cpu)}` : ''}` +
    (r.failures.length > 0 ? `  [${r.failures.join('; ')}]` : '')
}

const cpuText = (c: RunResult['cpu']): string => c === undefined ? '' : [c.service, c.worker, c.postgres, c.rabbitmq, c.redis, c.generator].map((ms) => ms.toFixed(3)).join('+')

async function capacity (gen: Generator, runs: RunResult[]): Promise<{ rate?: number, firstBad?: number, note: string }> {
  const step = async (r: number): Promise<boolean> => {
    await gen.run(`warm-up ${r}/s`, r, stepWarmupS, false)
    const result = await gen.run(`step ${runs.length + 1}`, r, stepDurationS, true)
    result.failures = judge(result, p99TargetMs)
    runs.push(result)
    console.log(`- ${describe(result)}`)
    return result.failures.length === 0
  }
  let good: number | undefined
  let bad: number | undefined
  for (let r = startRate; r <= maxRate; r *= 2) {
    if (await step(r)) good = r
    else { bad = r; break }
  }
  if (bad === undefined) return { rate: good, note: `every step up to ${good}/s met p99 < ${p99TargetMs} ms (--max-rate ${maxRate})` }
  if (good === undefined) return { firstBad: bad, note: `the first step, ${bad}/s, already missed p99 < ${p99TargetMs} ms (try a lower --start-rate)` }
  while ((bad - good) / good > capacityPrecision) {
    const mid = Math.round((good + bad) / 2)
    if (await step(mid)) good = mid
    else bad = mid
  }
  return { rate: good, firstBad: bad, note: `highest rate with p99 < ${p99TargetMs} ms and only 200/402: ${good}/s (${bad}/s missed)` }
}

async function main (): Promise<number> {
  if (loadAtStart > cpus().length) {
    console.warn(`warning: load average ${loadAtStart.toFixed(1)} on ${cpus().length} CPUs before the bench started; other work is running and the figures will be high and noisy`)
  }
  const config = loadConfig(undefined, () => {})
  const script = `${repo}dist/src/server.js`
  if (!existsSync(script)) throw new Error(`${script} is missing: run \`npm run build\` (npm run bench:latency does)`)
  const runId = randomBytes(3).toString('hex')
  // The embedded MongoDB in memory only: the bench's archive never lands in a developer's snapshot file.
  const env = { EMBEDDED_MONGO_PATH: '', ...process.env, LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'warn' }
  const service = await ServiceProcess.onFreePort(script, repo, { ...env, ROLE: split ? 'api' : 'all' }, 'PORT', 'latency-service')
  const { url, logPath } = service
  const worker = split ? await ServiceProcess.onFreePort(script, repo, { ...env, ROLE: 'worker' }, 'WORKER_PORT', 'latency-worker') : undefined
  const mode = ci ? 'ci' : findCapacity ? 'find-capacity' : 'rate'
  console.log(`latency run ${runId} (${mode}): service on ${url}${worker !== undefined ? ` (ROLE=api) and a ROLE=worker process on ${worker.url}` : ' (ROLE=all)'}, database ${redactUrl(config.DATABASE_URL)}, log ${logPath}`)
  worker?.start()
  workerPid = worker?.pid
  service.start()
  servicePid = service.pid
  const pool = new pg.Pool({ connectionString: config.DATABASE_URL, max: 2 })
  let gen: Generator | undefined
  let reference: ServiceProcess | undefined
  let referenceGen: Generator | undefined
  /** The reference server in its own process, and a generator of its own aimed at it (same headers as the gateway's). */
  const startReference = async (setup: GeneratorSetup): Promise<Generator> => {
    const server = await ServiceProcess.onFreePort(`${repo}dist/bench/latency-reference.js`, repo, env, 'PORT', 'latency-reference')
    reference = server
    server.start()
    referencePid = server.pid
    if (await server.waitReady(30_000) === undefined) throw new Error(`the reference server did not become ready (${server.exitStatus ?? 'still running'}):\n${server.tail()}`)
    referenceGen = new Generator({ ...setup, url: server.url }, runId, server.pid!)
    await referenceGen.start()
    return referenceGen
  }
  try {
    const bootMs = await service.waitReady(ci ? 30_000 : 60_000)
    if (bootMs === undefined) throw new Error(`the service did not become ready (${service.exitStatus ?? 'still running'}):\n${service.tail()}`)
    if (worker !== undefined && await worker.waitReady(ci ? 30_000 : 60_000) === undefined) {
      throw new Error(`the worker process did not become ready (${worker.exitStatus ?? 'still running'}):\n${worker.tail()}`)
    }
    console.log(`service ready in ${(bootMs / 1000).toFixed(1)} s (pid ${service.pid})`)

    const seedStarted = performance.now()
    const population = await seedPopulation(pool, {
      runId, users: userCount, cardsPerUser, corporateCards: 0, userFundMinor: amounts.fundMinor, corporateFundMinor: 100n
    })
    console.log(`seeded ${userCount} cardholders x ${cardsPerUser} cards in ${Math.round(performance.now() - seedStarted)} ms`)

    const setup: GeneratorSetup = {
      url, connections, timeoutMs, pairs: population.pairs,
      headers: { 'content-type': 'application/json', authorization: basicAuth(config.JIT_BASIC_AUTH_USER, config.JIT_BASIC_AUTH_PASSWORD) }
    }
    gen = new Generator(setup, runId, service.pid!, worker?.pid)
    await gen.start()
    // What each group burns with no request at all: at low rates it dominates the CPU per response.
    const restBefore = cpuSnapshot(service.pid, worker?.pid)
    await new Promise((resolve) => setTimeout(resolve, 1000))
    const atRest = cpuPerRequest(restBefore, cpuSnapshot(service.pid, worker?.pid), 1)

    const runs: RunResult[] = []
    const notes: string[] = []
    const failures: string[] = []
    let found: Awaited<ReturnType<typeof capacity>> | undefined
    if (findCapacity) {
      console.log(`finding capacity: from ${startRate}/s doubling, then bisecting; ${stepWarmupS} s warm-up + ${stepDurationS} s per step; target p99 < ${p99TargetMs} ms`)
      found = await capacity(gen, runs)
      console.log(found.note)
      notes.push(found.note)
    } else {
      const floorGen = withReference ? await startReference(setup) : undefined
      const gatewayRuns: RunResult[] = []
      const referenceRuns: RunResult[] = []
      for (let round = 1; round <= rounds; round++) {
        const suffix = rounds > 1 ? ` ${round}` : ''
        await gen.run('warm-up', rate, warmupS, false)
        const result = await gen.run(ci ? 'ci' : `run${suffix}`, rate, durationS, true)
        result.failures = judge(result, ciBudget.p99Ms)
        runs.push(result)
        gatewayRuns.push(result)
        console.log(`- ${describe(result)}`)
        if (ci) failures.push(...result.failures)
        if (floorGen !== undefined) {
          await floorGen.run('warm-up', rate, warmupS, false)
          const floor = await floorGen.run(`reference${suffix}`, rate, durationS, true)
          floor.failures = judge(floor, ciBudget.p99Ms)
          runs.push(floor)
          referenceRuns.push(floor)
          console.log(`- ${describe(floor)}`)
        }
      }
      const medianOf = (rs: RunResult[], pick: (r: RunResult) => number): number => median(rs.map(pick)) ?? NaN
      const p99 = medianOf(gatewayRuns, (r) => r.latency.p99)
      if (rounds > 1) notes.push(`JIT medians of ${rounds} rounds: p50 ${medianOf(gatewayRuns, (r) => r.latency.p50).toFixed(2)} ms, p99 ${p99.toFixed(2)} ms`)
      if (referenceRuns.length > 0) {
        const floorP99 = medianOf(referenceRuns, (r) => r.latency.p99)
        notes.push(`reference (one Redis GET and one committed UPDATE per request, the same open loop after each run): p50 ${medianOf(referenceRuns, (r) => r.latency.p50).toFixed(2)} ms, ` +
          `p99 ${floorP99.toFixed(2)} ms; JIT p99 ${p99.toFixed(2)} ms = ${(p99 / floorP99).toFixed(2)} x the reference's${rounds > 1 ? ` (medians of ${rounds} rounds)` : ''}; ` +
          'the gateway\'s processes stay up during the reference runs (its worker finishes the run\'s last events in the reference\'s warm-up), ' +
          'and the PostgreSQL, RabbitMQ and Redis columns count whatever they do')
      }
      for (const note of notes) console.log(note)
    }
    const tails = await stageTails(url)
    if (tails !== undefined) {
      console.log(describeStageTails(tails))
      notes.push(describeStageTails(tails))
    }
    const lagged = runs.filter((r) => r.sendLag.p99 > lagWarnMs)
    if (lagged.length > 0) {
      notes.push(`send lag p99 above ${lagWarnMs} ms in ${lagged.map((r) => `${r.label} (${r.targetRate}/s: ${r.sendLag.p99.toFixed(1)} ms)`).join(', ')}: ` +
        'the generator could not keep the schedule (a busy machine, or try --threads 2); latency counts from the due time, so that lag is in the figures')
    }
    notes.push('CPU ms per response: api = the answering process group (all threads), worker = the ROLE=worker process group (split roles); postgres, rabbitmq and redis = every such process on the machine, ' +
      'other databases\' and tests\' work included; generator = this bench process (the load generator threads)' +
      (atRest !== undefined ? `; at rest (1 s before the first run, 10 ms ticks): ${Object.entries(atRest).map(([k, ms]) => `${k} ${ms.toFixed(0)}`).join(', ')} ms per s` : ''))
    const totalS = (performance.now() - runStarted) / 1000
    if (ci && totalS > ciBudget.maxTotalS) failures.push(`the run took ${totalS.toFixed(0)} s (> ${ciBudget.maxTotalS} s)`)

    const environment = {
      ...await machineEnvironment(pool, loadAtStart),
      pg_pool_max: config.PG_POOL_MAX,
      roles: split ? 'a ROLE=api process and a ROLE=worker process' : 'one ROLE=all process',
      service_processes_per_role: config.WORKERS,
      mongo: config.MONGO_URL === 'embedded' ? 'embedded (in-process CongoDB)' : 'external'
    }
    const report = {
      run_id: runId,
      finished_at: new Date().toISOString(),
      mode,
      settings: {
        rate: findCapacity ? undefined : rate,
        duration_s: findCapacity ? undefined : durationS,
        warmup_s: findCapacity ? undefined : warmupS,
        find_capacity: findCapacity ? { start_rate: startRate, max_rate: maxRate, p99_target_ms: p99TargetMs, step_duration_s: stepDurationS, step_warmup_s: stepWarmupS } : undefined,
        users: userCount,
        cards_per_user: cardsPerUser,
        connections_per_thread: connections,
        threads,
        timeout_ms: timeoutMs,
        amount_minor: [amounts.minMinor, amounts.maxMinor]
      },
      environment,
      cpu_ms_per_s_at_rest: atRest !== undefined ? Object.fromEntries(Object.entries(atRest).map(([k, v]) => [k, round(v, 1)])) : undefined,
      capacity: found !== undefined ? { rate_per_s: found.rate, first_missed_rate_per_s: found.firstBad, p99_target_ms: p99TargetMs } : undefined,
      runs: runs.map((r) => ({
        label: r.label,
        target_rate_per_s: r.targetRate,
        duration_s: r.durationS,
        sent: r.sent,
        responses: r.responses,
        achieved_rate_per_s: round(r.achievedRate, 1),
        latency_ms: roundSummary(r.latency),
        send_lag_ms: roundSummary(r.sendLag),
        statuses: r.statuses,
        error_statuses: r.errorStatuses,
        no_answer: r.errors,
        cpu_ms_per_response: r.cpu !== undefined ? Object.fromEntries(Object.entries(r.cpu).map(([k, v]) => [k, round(v, 3)])) : undefined,
        sample: r.sample,
        failures: r.failures
      })),
      notes,
      total_s: round(totalS, 1),
      ci: ci ? { budget: ciBudget, passed: failures.length === 0, failures } : undefined
    }

    const header = ['run', 'target/s', 'achieved/s', 'responses', 'p50 ms', 'p99 ms', 'p999 ms', 'max ms', 'lag p99 ms', 'lag max ms', '200', '402', 'errors', 'CPU ms/req api+worker+pg+mq+redis+gen', 'result']
    const cells = runs.map((r) => [
      r.label, String(r.targetRate), r.achievedRate.toFixed(0), String(r.responses),
      r.latency.p50.toFixed(2), r.latency.p99.toFixed(2), r.latency.p999.toFixed(2), r.latency.max.toFixed(2),
      r.sendLag.p99.toFixed(2), r.sendLag.max.toFixed(2),
      String(r.statuses['200'] ?? 0), String(r.statuses['402'] ?? 0),
      String(Object.values(r.errorStatuses).reduce((a, n) => a + n, 0) + Object.values(r.errors).reduce((a, n) => a + n, 0)),
      cpuText(r.cpu), r.failures.length === 0 ? 'ok' : 'missed'
    ])
    console.log('\n' + textTable(header, cells))
    for (const note of notes) console.log(`note: ${note}`)

    const dir = `${repo}bench/results/`
    await mkdir(dir, { recursive: true })
    const stem = ci ? 'ci-latency' : 'latest-latency'
    await writeFile(`${dir}${stem}.json`, JSON.stringify(report, null, 2) + '\n')
    await writeFile(`${dir}${stem}.md`, markdownReport(report, header, cells))
    console.log(`\nwritten: bench/results/${stem}.json, bench/results/${stem}.md (${totalS.toFixed(0)} s)`)

    if (!ci) return 0
    if (failures.length > 0) {
      console.log(`\nlatency budget check: FAILED\n${failures.map((f) => `  - ${f}`).join('\n')}`)
      return 1
    }
    console.log(`\nlatency budget check: passed (JIT p99 < ${ciBudget.p99Ms} ms at ${rate}/s, only 200/402)`)
    return 0
  } finally {
    await gen?.close().catch(() => {})
    await referenceGen?.close().catch(() => {})
    await reference?.stop(10_000)
    await service.stop(10_000)
    await worker?.stop(10_000)
    await pool.end()
  }
}

function roundSummary (s: LatencySummary): Record<string, number> {
  const keys: Array<keyof LatencySummary> = ['count', 'mean', 'p50', 'p90', 'p99', 'p999', 'max']
  return Object.fromEntries(keys.map((k) => [k, k === 'count' ? s[k] : round(s[k], 3)]))
}


function markdownReport (report: { run_id: string, finished_at: string, mode: string, settings: object, environment: object, notes: string[], ci?: { passed: boolean, failures: string[] } },
  header: string[], cells: string[][]): string {
  const lines = [
    `# JIT latency, ${report.mode} run ${report.run_id} (${report.finished_at})`,
    '',
    `Settings: \`${JSON.stringify(report.settings)}\``,
    '',
    `Environment: \`${JSON.stringify(report.environment)}\``,
    '',
    'Open loop: request k is due at start + k / rate and is sent then; latency = end of the response - due time',
    '(fractional ms), so a slow answer delays no later request and a late send counts in the latency. Lag = send - due.',
    'errors = statuses other than 200/402 plus requests without an answer; result = p99 under the limit (100 ms, or the',
    'p99 target of --find-capacity) and no error.',
    '',
    markdownTable(header, cells),
    ''
  ]
  for (const note of report.notes) lines.push(`- note: ${note}`)
  if (report.ci !== undefined) lines.push('', `Budget check: ${report.ci.passed ? 'passed' : 'FAILED'}`, ...report.ci.failures.map((f) => `- ${f}`))
  lines.push('')
  return lines.join('\n')
}

/** The service runs in its own process group, which an interrupted or timed-out bench would otherwise leave behind. */
function abort (message: string): never {
  console.error(message)
  for (const pid of [servicePid, workerPid, referencePid]) if (pid !== undefined) try { process.kill(-pid, 'SIGKILL') } catch {}
  process.exit(1)
}
process.once('SIGINT', () => abort('interrupted'))
process.once('SIGTERM', () => abort('terminated'))
// --ci is bounded whatever happens: a hung boot, seed or drain fails the check instead of holding CI.
if (ci) setTimeout(() => abort(`latency budget check: FAILED (no result within ${ciBudget.maxTotalS + 5} s)`), (ciBudget.maxTotalS + 5) * 1000).unref()

main().then(
  (code) => { process.exit(code) },
  (err: Error) => { console.error(`latency bench failed: ${err.stack ?? err.message}`); process.exit(1) }
)
