import t from 'tap'
import pg from 'pg'
import { spawn, execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, writeFile, mkdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { TEST_DATABASE_URL, adminHeaders, eventually, jitHeaders, spawnServer, uniq, type SpawnedServer, type Teardown } from '../helper.js'
import { cardholder, jitRequest } from '../jit-fixtures.js'

// The repo's nginx.conf with Debian's nginx in front of two instances of the built server (`npm test` builds first).
// .ci/run installs nginx-light; a machine without it gets it here the same way.
const NGINX = '/usr/sbin/nginx'
if (!existsSync(NGINX)) {
  execFileSync('bash', ['-c', 'apt-get update -qq && apt-get install -y -qq --no-install-recommends nginx-light'], { stdio: 'inherit', timeout: 300_000 })
}

interface Addresses { upstreams: string[], publicPort: number, operatorsPort: number, dir: string }

/**
 * The repo's nginx.conf with only its addresses and paths changed: compose service names become loopback addresses,
 * listen ports become free ones, pid/log/temp files go to a temporary prefix. Every substitution must match exactly
 * what it expects, so a change of the file's shape fails here instead of testing something else.
 */
function deriveConfig (conf: string, a: Addresses): string {
  let upstream = 0
  const replacements: Array<[RegExp, (...m: string[]) => string, number]> = [
    [/^(\s*server )app\d+:3000( .*;)$/gm, (_, head, tail) => `${head}${a.upstreams[upstream++]}${tail}`, a.upstreams.length],
    [/^(\s*listen )80( default_server;)$/gm, (_, head, tail) => `${head}127.0.0.1:${a.publicPort}${tail}`, 1],
    [/^(\s*listen )8081;$/gm, (_, head) => `${head}127.0.0.1:${a.operatorsPort};`, 1],
    [/^pid .*;$/gm, () => `pid ${a.dir}/nginx.pid;`, 1],
    [/^error_log \S+/gm, () => `error_log ${a.dir}/error.log`, 1],
    [/^(\s*access_log )\S+/gm, (_, head) => `${head}${a.dir}/access.log`, 1],
    [/^http \{$/gm, () => ['http {', ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((k) => `    ${k}_temp_path ${a.dir}/${k};`)].join('\n'), 1]
  ]
  let out = conf
  for (const [pattern, replace, expected] of replacements) {
    const found = out.match(pattern)?.length ?? 0
    if (found !== expected) throw new Error(`nginx.conf: expected ${expected} match(es) of ${pattern}, found ${found}`)
    out = out.replace(pattern, replace as (substring: string, ...args: any[]) => string)
  }
  return out
}

async function startNginx (t: Teardown, upstreams: string[]): Promise<{ publicUrl: string, operatorsUrl: string, dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'nginx-'))
  for (const k of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) await mkdir(join(dir, k))
  // Below the kernel's ephemeral range (from 32768), where other processes' outgoing connections take ports.
  const port = (): number => 20000 + Math.floor(Math.random() * 12000)
  const publicPort = port()
  const operatorsPort = publicPort + 1
  const conf = deriveConfig(await readFile('nginx.conf', 'utf8'), { upstreams, publicPort, operatorsPort, dir })
  await writeFile(join(dir, 'nginx.conf'), conf)
  execFileSync(NGINX, ['-t', '-q', '-p', dir, '-c', join(dir, 'nginx.conf')], { stdio: 'pipe' })
  // Its own process group, so that teardown kills the master and its workers together.
  const nginx = spawn(NGINX, ['-p', dir, '-c', join(dir, 'nginx.conf'), '-g', 'daemon off;'], { detached: true, stdio: 'ignore' })
  t.teardown(() => { try { process.kill(-(nginx.pid as number), 'SIGKILL') } catch {} })
  const publicUrl = `http://127.0.0.1:${publicPort}`
  await eventually(async () => (await fetch(`${publicUrl}/`).then((r) => r.status, () => 0)) === 404, 10_000)
  return { publicUrl, operatorsUrl: `http://127.0.0.1:${operatorsPort}`, dir }
}

async function ready (server: SpawnedServer, host: string): Promise<void> {
  await eventually(async () => fetch(`http://${host}:${server.port}/ready`).then((r) => r.ok, () => false), 60_000, 100)
    .catch((err) => { throw new Error(`${(err as Error).message}: ${server.output().slice(-2000)}`) })
}

const pool = new pg.Pool({ connectionString: TEST_DATABASE_URL, max: 2 })
t.teardown(() => pool.end())

const hosts = ['127.0.0.2', '127.0.0.3']
const servers = hosts.map((HOST) => spawnServer(t, { HOST, LOG_LEVEL: 'warn' }))
await Promise.all(servers.map((s, i) => ready(s, hosts[i])))
const proxy = await startNginx(t, servers.map((s, i) => `${hosts[i]}:${s.port}`))

t.test('the public server exposes only /marqeta/*; the operators\' server only /v1 and the docs', async (t) => {
  const status = async (url: string, init?: RequestInit): Promise<number> => (await fetch(url, init)).status
  for (const path of ['/v1/users', '/v1/users/x', '/v1', '/health', '/ready', '/metrics', '/docs', '/marqeta', '/']) {
    t.equal(await status(`${proxy.publicUrl}${path}`, { headers: adminHeaders }), 404, `public ${path}`)
  }
  t.equal(await status(`${proxy.publicUrl}/marqeta/jit`, { method: 'POST' }), 401, 'the JIT route is proxied (no credentials)')
  t.equal(await status(`${proxy.operatorsUrl}/v1/users/${uniq('nobody')}`), 401, 'the admin API is proxied (no token)')
  t.equal(await status(`${proxy.operatorsUrl}/v1/users/${uniq('nobody')}`, { headers: adminHeaders }), 404, 'and answers with a token')
  for (const path of ['/health', '/ready', '/metrics', '/marqeta/jit', '/']) {
    t.equal(await status(`${proxy.operatorsUrl}${path}`), 404, `operators ${path}`)
  }
})

t.test('kill -9 of one instance mid-traffic costs no JIT request: every answer is 200/402, one decision per token', async (t) => {
  const total = 1500
  const concurrency = 10
  const killAfter = 500
  const holders = await Promise.all(Array.from({ length: concurrency }, () => cardholder(pool, { fundMinor: 100_000_000 })))
  const tokens: string[] = []
  const statuses = new Map<string, number>()
  let sent = 0
  let done = 0
  let killedAt = -1
  const victim = servers[0]
  const worker = async (w: number): Promise<void> => {
    while (sent < total) {
      sent++
      const body = jitRequest({ user: holders[w].user, card: holders[w].card, amount: '1.00' })
      const token = body.gpa_order.jit_funding.token as string
      tokens.push(token)
      const status = await fetch(`${proxy.publicUrl}/marqeta/jit`, {
        method: 'POST',
        headers: { ...jitHeaders, 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(10_000)
      }).then(async (r) => { await r.arrayBuffer(); return r.status }, () => -1)
      statuses.set(token, status)
      if (++done === killAfter) {
        killedAt = done
        victim.kill('SIGKILL')
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, (_, w) => worker(w)))
  t.equal(killedAt, killAfter, 'the kill happened mid-traffic')
  t.equal(await victim.exited, null, 'the instance died of the signal')
  t.equal(tokens.length, total)

  const counts = new Map<number, number>()
  for (const s of statuses.values()) counts.set(s, (counts.get(s) ?? 0) + 1)
  t.comment(`answers by status: ${JSON.stringify(Object.fromEntries(counts))}`)
  t.same([...counts.keys()].filter((s) => s !== 200 && s !== 402), [], 'no 502, 504 or failed request')

  // Each token has exactly one decision row, with the status its caller got (a deadline decline is recorded best
  // effort after its answer, hence the wait).
  const rows = await eventually(async () => {
    const { rows } = await pool.query<{ jit_token: string, status_code: number, n: number }>(
      'SELECT jit_token, status_code, count(*)::int AS n FROM decisions WHERE jit_token = ANY($1) GROUP BY 1, 2', [tokens])
    return rows.length === total ? rows : undefined
  }, 10_000).catch(async () => (await pool.query('SELECT jit_token, status_code, 1 AS n FROM decisions WHERE jit_token = ANY($1)', [tokens])).rows)
  t.equal(rows.length, total, 'one decision row per token')
  t.equal(rows.filter((r) => r.n !== 1).length, 0)
  t.equal(rows.filter((r) => r.status_code !== statuses.get(r.jit_token)).length, 0, 'the recorded answer is the one sent')

  const log = await readFile(join(proxy.dir, 'access.log'), 'utf8')
  const retried = log.split('\n').filter((l) => /POST \/marqeta\/jit/.test(l) && /ua="[^"]*, /.test(l)).length
  t.comment(`requests nginx passed to the other instance after a failure: ${retried}`)
})
