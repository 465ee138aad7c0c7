import t from 'tap'
import { execSync, spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../../src/app.js'
import type { Topology } from '../../src/broker.js'
import { adminHeaders, eventually, freePort, jitHeaders, scratchDatabase, testConfig, uniq, webhookHeaders } from '../helper.js'
import { jitRequest } from '../jit-fixtures.js'
import { deleteTopology } from '../src/consumer-helpers.js'

/**
 * Debian's Prometheus scrapes a live service under light traffic, loads ops/prometheus/alerts.yml, and evaluates every
 * panel query of the Grafana dashboard: each must return data. The service runs on a database, exchange and queues of
 * its own, so that its relay and consumers (which export the backlog and queue metrics) touch nothing shared.
 */

const PROMETHEUS = '/usr/bin/prometheus'
const root = new URL('../../', import.meta.url)
const alertsPath = new URL('ops/prometheus/alerts.yml', root).pathname
const dashboard = JSON.parse(readFileSync(new URL('ops/grafana/dashboards/jit-gateway.json', root), 'utf8'))

interface Panel { title?: string, panels?: Panel[], targets?: Array<{ expr?: string, refId?: string }> }

function panelQueries (panels: Panel[]): Array<{ title: string, expr: string }> {
  return panels.flatMap((p) => [
    ...(p.targets ?? []).filter((q) => q.expr !== undefined).map((q) => ({ title: `${p.title ?? '?'} (${q.refId ?? ''})`, expr: q.expr! })),
    ...panelQueries(p.panels ?? [])
  ])
}

/** Grafana's variables, as Grafana would expand them for "All instances, last 5 minutes". */
function expand (expr: string): string {
  return expr
    .replaceAll('$__rate_interval', '1m')
    .replaceAll('$__interval', '15s')
    .replaceAll('$__range', '5m')
    .replaceAll('$instance', '.*')
}

const promqlWords = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'and', 'or', 'unless', 'offset',
  'bool', 'inf', 'nan', 'e'])

/** Metric names in a PromQL expression: identifiers that are neither functions, keywords, labels nor durations. */
export function metricNames (expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
  return [...stripped.matchAll(/(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()/g)]
    .map((m) => m[1])
    .filter((name) => !promqlWords.has(name.toLowerCase()))
}

t.test('metricNames reads the metric names of an expression', async (t) => {
  t.same(metricNames('histogram_quantile(0.99, sum by (instance, le) (rate(a_bucket{route="/x"}[5m]))) > 0.1 or max by (q) (b) == 1'), ['a_bucket', 'b'])
  t.same(metricNames('x / y offset 1d and sum(rate(z{r=~"a|b"}[30m])) > 3 * 1024'), ['x', 'y', 'z'])
})

t.test('every dashboard panel returns data and the alert rules load, name exported metrics and stay silent', async (t) => {
  if (!existsSync(PROMETHEUS)) {
    // Debian's package (it brings promtool too); .ci/run installs it the same way.
    execSync('command -v prometheus || (apt-get update -qq && apt-get install -y -qq prometheus)', { stdio: 'ignore', shell: '/bin/bash', timeout: 600_000 })
  }

  // A database of our own: the app migrates it at boot, and its relay publishes only what this test did.
  const databaseUrl = await scratchDatabase(t, 'prom')

  const id = uniq('prom').replace(/-/g, '.')
  const topology: Topology = {
    exchange: `test.${id}`,
    queues: [
      { name: `test.${id}.webhooks`, bindings: ['webhook.#'], consumer: 'webhooks' },
      { name: `test.${id}.archive`, bindings: ['#'], consumer: 'archive' }
    ]
  }
  const app: FastifyInstance = await buildApp(testConfig({ DATABASE_URL: databaseUrl, ROLE: 'all', RELAY_POLL_MS: '250' }), { logger: false, topology })
  t.teardown(async () => {
    await app.close()
    await deleteTopology(topology)
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const appPort = (app.server.address() as { port: number }).port
  await eventually(async () => app.broker.connected, 20_000)

  const dir = mkdtempSync(join(tmpdir(), 'prometheus-'))
  const promPort = await freePort()
  writeFileSync(join(dir, 'prometheus.yml'), [
    'global: { scrape_interval: 1s, scrape_timeout: 900ms, evaluation_interval: 1s }',
    `rule_files: [${JSON.stringify(alertsPath)}]`,
    'scrape_configs:',
    '  - job_name: jit-gateway',
    `    static_configs: [{ targets: ["127.0.0.1:${appPort}"] }]`
  ].join('\n'))
  let promLog = ''
  const prometheus = spawn(PROMETHEUS, [
    `--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`,
    `--web.listen-address=127.0.0.1:${promPort}`, '--log.level=warn'
  ], { stdio: ['ignore', 'pipe', 'pipe'] })
  prometheus.stdout.on('data', (d) => { promLog += d })
  prometheus.stderr.on('data', (d) => { promLog = (promLog + d).slice(-4000) })
  t.teardown(async () => {
    if (prometheus.exitCode === null) {
      prometheus.kill('SIGTERM')
      await new Promise((resolve) => prometheus.once('exit', resolve))
    }
    rmSync(dir, { recursive: true, force: true })
  })

  const api = async (path: string): Promise<any> => {
    const res = await fetch(`http://127.0.0.1:${promPort}/api/v1/${path}`)
    const body = await res.json() as { status: string, data: any, error?: string }
    if (body.status !== 'success') throw new Error(`${path}: ${body.error ?? res.status}`)
    return body.data
  }
  const query = async (expr: string): Promise<Array<{ metric: Record<string, string>, value: [number, string] }>> =>
    (await api(`query?query=${encodeURIComponent(expr)}`)).result

  await eventually(async () => {
    try { return (await query('up{job="jit-gateway"} == 1')).length === 1 } catch { return false }
  }, 30_000, 250).catch((err) => { throw new Error(`${(err as Error).message}; prometheus said: ${promLog}`) })

  // Light traffic through the service's own HTTP routes: admin calls, JIT decisions (approvals and declines), webhooks.
  const base = `http://127.0.0.1:${appPort}`
  const call = async (method: string, path: string, headers: Record<string, string>, body?: unknown): Promise<Response> =>
    await fetch(`${base}${path}`, {
      method, headers: { ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) }, body: body === undefined ? undefined : JSON.stringify(body)
    })
  const user = uniq('prom-user')
  const card = uniq('prom-card')
  t.equal((await call('POST', '/v1/users', adminHeaders, { token: user })).status, 201)
  t.equal((await call('POST', '/v1/cards', adminHeaders, { token: card, user_token: user })).status, 201)
  t.equal((await call('POST', `/v1/users/${user}/loads`, { ...adminHeaders, 'idempotency-key': uniq('load') }, { amount: '1000.00', currency_code: 'USD' })).status, 201)

  // The simulator's mixed Marqeta traffic (authorizations, incrementals, clearings, reversals, refunds as webhooks,
  // loads), reconciled against the ledger when it ends, next to the calls below that every panel needs at least once.
  let simulatorOutput = ''
  const simulator = spawn(process.execPath, ['dist/bench/simulate.js', '--url', base, '--users', '10', '--cards', '20',
    '--rate', '15', '--duration', '18', '--seed', '20261204', '--database-url', databaseUrl], { stdio: ['ignore', 'pipe', 'pipe'] })
  simulator.stdout.on('data', (d) => { simulatorOutput += d })
  simulator.stderr.on('data', (d) => { simulatorOutput += d })
  const simulatorExit = new Promise<number | null>((resolve) => simulator.once('exit', resolve))
  t.teardown(() => { if (simulator.exitCode === null) simulator.kill('SIGKILL') })

  const statuses: number[] = []
  const trafficUntil = Date.now() + 20_000
  for (let round = 0; Date.now() < trafficUntil; round++) {
    const approved = jitRequest({ user, card, amount: '1.25' })
    statuses.push((await call('POST', '/marqeta/jit', jitHeaders, approved)).status)
    statuses.push((await call('POST', '/marqeta/jit', jitHeaders, jitRequest({ user, card, amount: '50000.00' }))).status)
    const clearing = jitRequest({ user, card, amount: '1.25', method: 'pgfs.authorization.clearing', original: approved.gpa_order.jit_funding.token })
    statuses.push((await call('POST', '/marqeta/webhooks', webhookHeaders, { transactions: [{ ...clearing, type: 'authorization.clearing', state: 'COMPLETION' }] })).status)
    statuses.push((await call('GET', `/v1/users/${user}/balances`, adminHeaders)).status)
    statuses.push((await call('GET', '/v1/jit/stats', adminHeaders)).status)
    if (round % 4 === 0) statuses.push((await call('GET', '/health', {})).status)
    await new Promise((resolve) => setTimeout(resolve, 250))
  }
  t.ok(statuses.includes(200) && statuses.includes(402), 'approvals and declines were answered')
  t.same([...new Set(statuses)].sort(), [200, 402], 'every call succeeded (or declined)')
  t.equal(await simulatorExit, 0, `the simulator's traffic reconciled with the ledger (${simulatorOutput.trim().split('\n').slice(-3).join(' | ')})`)

  // Every panel's query: rates need two scrapes inside their window, hence the wait per query.
  const queries = panelQueries(dashboard.panels)
  t.ok(queries.length >= 20, `${queries.length} panel queries`)
  for (const { title, expr } of queries) {
    const result = await eventually(async () => { const r = await query(expand(expr)); return r.length > 0 ? r : undefined }, 15_000, 500)
      .catch(() => [])
    t.ok(result.length > 0, `panel "${title}" returns data: ${expand(expr)}`)
  }
  for (const variable of dashboard.templating?.list ?? []) {
    const definition = /label_values\(([^,]+),\s*(\w+)\)/.exec(variable.definition ?? '')
    if (definition === null) continue
    const values = await query(`count by (${definition[2]}) (${definition[1]})`)
    t.ok(values.length > 0, `variable $${variable.name} has values`)
  }

  // Every metric an alert names is on /metrics (`up` is Prometheus's own: whether the scrape worked).
  const exported = new Set<string>()
  const exposition = await (await fetch(`${base}/metrics`)).text()
  for (const [, name, type] of exposition.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    exported.add(name)
    if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) exported.add(name + suffix)
    if (type === 'summary') for (const suffix of ['_sum', '_count']) exported.add(name + suffix)
  }
  const rules = await api('rules')
  const alerting = rules.groups.flatMap((g: any) => g.rules).filter((r: any) => r.type === 'alerting')
  const fileRules = [...readFileSync(alertsPath, 'utf8').matchAll(/^\s*- alert: (\S+)/gm)].map((m) => m[1])
  t.same(alerting.map((r: any) => r.name).sort(), [...fileRules].sort(), 'every rule of alerts.yml is loaded')
  for (const rule of alerting) {
    t.equal(rule.health, 'ok', `${rule.name} evaluates without error ${rule.lastError ?? ''}`)
    for (const name of metricNames(rule.query)) {
      if (name === 'up') continue
      t.ok(exported.has(name), `${rule.name}: ${name} is exported by /metrics`)
    }
  }

  // LedgerOverdrawn (severity info) reports an event, not a fault: the simulator's network-forced postings (clearings
  // larger than their hold, stand-in) may overdraw an account, and then it must fire, backed by the service's counter.
  const overdrawn = [...(await (await fetch(`${base}/metrics`)).text()).matchAll(/^ledger_overdrawn_total(?:\{[^}]*\})? (\S+)$/gm)]
    .reduce((sum, m) => sum + Number(m[1]), 0)
  const firingNow = async (): Promise<string[]> => ((await api('alerts')).alerts as Array<{ labels: { alertname: string }, state: string }>)
    .filter((a) => a.state === 'firing').map((a) => a.labels.alertname)
  if (overdrawn > 0) await eventually(async () => (await firingNow()).includes('LedgerOverdrawn'), 15_000, 500).catch(() => {})
  const firing = await firingNow()
  t.same(firing.filter((name) => name !== 'LedgerOverdrawn'), [], 'no alert fires on the healthy service')
  t.equal(firing.includes('LedgerOverdrawn'), overdrawn > 0, `LedgerOverdrawn fires exactly when the service counted an overdraft (${overdrawn})`)
})
