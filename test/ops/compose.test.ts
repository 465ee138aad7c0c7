import t from 'tap'
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

// Debian's docker-compose (v1.29) checks the file without a Docker engine; .ci/run installs it, and so does this test
// on a machine without it.
const COMPOSE = '/usr/bin/docker-compose'
if (!existsSync(COMPOSE)) {
  execFileSync('bash', ['-c', 'apt-get update -qq && apt-get install -y -qq --no-install-recommends docker-compose'], { stdio: 'inherit', timeout: 300_000 })
}

const required: Record<string, string> = {
  POSTGRES_PASSWORD: 'pg-secret-1',
  RABBITMQ_USER: 'gateway',
  RABBITMQ_PASSWORD: 'rabbit-secret-2',
  ADMIN_TOKEN: 'admin-token-secret-3456',
  JIT_BASIC_AUTH_USER: 'marqeta-jit',
  JIT_BASIC_AUTH_PASSWORD: 'jit-password-secret-78901',
  WEBHOOK_BASIC_AUTH_USER: 'marqeta-webhook',
  WEBHOOK_BASIC_AUTH_PASSWORD: 'webhook-password-secret-234',
  WEBHOOK_SECRET: 'webhook-hmac-secret-5',
  GRAFANA_ADMIN_PASSWORD: 'grafana-secret-6'
}

// An empty env file, so that a developer's .env next to the compose file cannot fill in what the test leaves out.
const envFile = join(await mkdtemp(join(tmpdir(), 'compose-')), 'empty.env')
await writeFile(envFile, '')
function config (env: Record<string, string>): { status: number | null, stdout: string, stderr: string } {
  const r = spawnSync(COMPOSE, ['--env-file', envFile, '-f', 'docker-compose.yml', 'config'], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: tmpdir(), ...env },
    encoding: 'utf8',
    timeout: 60_000
  })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

t.test('with every secret set, the file is valid; without one, compose stops naming it', async (t) => {
  const ok = config(required)
  t.equal(ok.status, 0, ok.stderr)
  for (const name of Object.keys(required)) {
    const { [name]: _, ...env } = required
    const r = config(env)
    t.not(r.status, 0, `${name} missing stops compose`)
    t.match(r.stderr, `set ${name}`, `the message names ${name}`)
  }
})

t.test('production settings: no default secrets, a real MongoDB, internal tools on 127.0.0.1 only', async (t) => {
  const { stdout } = config(required)
  t.notMatch(stdout, /change-me|guest:guest|:admin\b|dev-.*-change-me/, 'no default or development secret')
  t.equal(stdout.match(/NODE_ENV: production/g)?.length, 3, 'both api instances and the worker run in production')
  t.equal(stdout.match(/MONGO_URL: mongodb:\/\/mongo:27017\/jit/g)?.length, 3)
  t.equal(stdout.match(/WEBHOOK_SECRET: webhook-hmac-secret-5/g)?.length, 3)
  t.match(stdout, /GF_SECURITY_ADMIN_PASSWORD: grafana-secret-6/)
  t.match(stdout, /RABBITMQ_DEFAULT_PASS: rabbit-secret-2/)
  t.match(stdout, /DATABASE_URL: postgres:\/\/postgres:pg-secret-1@postgres:5432\/jit/)
  t.match(stdout, /GLIBC_TUNABLES: glibc\.malloc\.trim_threshold=4194304:glibc\.malloc\.mmap_threshold=4194304/, 'PostgreSQL keeps its backends\' heap')
  t.match(stdout, /10-queues\.conf:\/etc\/rabbitmq\/conf\.d\/10-queues\.conf:ro/, 'RabbitMQ creates classic queues in format 2')
  // Durable queues survive a recreated container: the node's data directory (named after the host) is in a volume.
  t.match(stdout, /hostname: rabbitmq/)
  t.match(stdout, /rabbitmq-data:\/var\/lib\/rabbitmq/)
  // Published ports: only nginx's public port on every address; the rest on this host only.
  const published = [...stdout.matchAll(/^\s*- (\S+:\d+:\d+)\/tcp$/gm)].map((m) => m[1]).sort()
  t.same(published, ['127.0.0.1:15672:15672', '127.0.0.1:3001:3000', '127.0.0.1:8081:8081', '127.0.0.1:9090:9090'])
  t.same([...stdout.matchAll(/published: (\d+)/g)].map((m) => m[1]), ['8080'], 'the public port alone is open to all')
})

t.test('roles: two api instances behind nginx, one worker whose probes and metrics stay on the compose network', async (t) => {
  const { stdout } = config(required)
  // A service's lines in `docker-compose config` (services at two spaces, their keys at four).
  const service = (name: string): string => new RegExp(`^  ${name}:\\n((?: {4}.*\\n)+)`, 'm').exec(stdout)?.[1] ?? ''
  for (const name of ['app1', 'app2']) {
    t.match(service(name), /^ {6}ROLE: api$/m, `${name} serves HTTP only`)
    t.match(service(name), /expose:\n\s+- '3000'/)
  }
  const worker = service('worker')
  t.match(worker, /^ {6}ROLE: worker$/m, 'one worker service')
  t.match(worker, /^ {6}WORKER_PORT: '3001'$/m)
  t.match(worker, /expose:\n\s+- '3001'\n/, 'WORKER_PORT on the compose network')
  t.notMatch(worker, /ports:/, 'and published nowhere')
  t.match(worker, /http:\/\/127\.0\.0\.1:3001\/ready/, 'its healthcheck asks WORKER_PORT')

  const nginx = readFileSync('nginx.conf', 'utf8')
  const upstream = /upstream app \{([^}]*)\}/.exec(nginx)?.[1] ?? ''
  t.same([...upstream.matchAll(/^\s*server (\S+)/gm)].map((m) => m[1]), ['app1:3000', 'app2:3000'], 'nginx routes to the api instances')
  t.notMatch(nginx, /\bworker:\d+/, 'never to the worker')

  const prometheus = readFileSync('ops/prometheus/prometheus.yml', 'utf8')
  t.same([...prometheus.matchAll(/^\s*- (\S+:\d+)$/gm)].map((m) => m[1]).filter((x) => !x.startsWith('localhost')).sort(),
    ['app1:3000', 'app2:3000', 'worker:3001'], 'Prometheus scrapes every api instance and the worker on WORKER_PORT')
})
