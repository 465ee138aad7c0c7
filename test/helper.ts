import { randomBytes } from 'node:crypto'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { connect, createServer, type AddressInfo, type Socket } from 'node:net'
import type { FastifyInstance } from 'fastify'
import pg from 'pg'
import { buildApp } from '../src/app.js'
import { developmentSecrets, loadConfig, type Config } from '../src/config.js'

export { freePort } from '../bench/free-port.js'

export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

/** A validated config for tests: the test database, quiet logs, and any overrides (as environment strings). */
export function testConfig (overrides: Record<string, string> = {}): Config {
  return loadConfig({
    DATABASE_URL: TEST_DATABASE_URL,
    LOG_LEVEL: 'silent',
    MONGO_URL: process.env.MONGO_URL ?? 'embedded',
    EMBEDDED_MONGO_PATH: '',
    ...overrides
  }, () => {})
}

export interface Teardown { teardown: (fn: () => unknown) => void }

/** A fresh app per test (file), closed when the test ends. */
export async function build (t: Teardown, overrides: Record<string, string> = {}): Promise<FastifyInstance> {
  const app = await buildApp(testConfig(overrides), { logger: false })
  t.teardown(() => app.close())
  await app.ready()
  return app
}

/** A database of the test's own on the test server, dropped when the test ends; returns its URL. */
export async function scratchDatabase (t: Teardown, prefix = 'scratch'): Promise<string> {
  const name = uniq(prefix).replace(/-/g, '_')
  const admin = new pg.Client({ connectionString: TEST_DATABASE_URL })
  await admin.connect()
  await admin.query(`CREATE DATABASE ${name}`)
  await admin.end()
  t.teardown(async () => {
    const drop = new pg.Client({ connectionString: TEST_DATABASE_URL })
    await drop.connect()
    // A pool's end() resolves before its backends have exited; forcing the drop under one that is still exiting would
    // surface as an error of that pool's client. Wait for them (a little), then force whatever remains.
    await eventually(async () => {
      const { rows } = await drop.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1', [name])
      return rows[0].n === 0
    }, 5000).catch(() => {})
    await drop.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
    await drop.end()
  })
  const url = new URL(TEST_DATABASE_URL)
  url.pathname = `/${name}`
  return url.toString()
}

/** A token unique to this run, within Marqeta's 36 characters. */
export function uniq (prefix: string): string {
  return `${prefix}-${randomBytes(6).toString('hex')}`.slice(0, 36)
}

const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`
export const adminHeaders = { authorization: `Bearer ${developmentSecrets.ADMIN_TOKEN}` }
export const jitHeaders = { authorization: basic(developmentSecrets.JIT_BASIC_AUTH_USER, developmentSecrets.JIT_BASIC_AUTH_PASSWORD) }
export const webhookHeaders = { authorization: basic(developmentSecrets.WEBHOOK_BASIC_AUTH_USER, developmentSecrets.WEBHOOK_BASIC_AUTH_PASSWORD) }

/** Polls until `check` returns a truthy value or the time runs out (for effects that happen through a queue). */
export async function eventually<T> (check: () => Promise<T | undefined | null | false>, timeoutMs = 10_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await check()
    if (value) return value
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, everyMs))
  }
}

/** Runs `n` tasks with at most `width` in flight at once, and returns their results in order. */
export async function inWaves<T> (n: number, width: number, task: (i: number) => Promise<T>): Promise<T[]> {
  const results: T[] = new Array(n)
  let next = 0
  await Promise.all(Array.from({ length: Math.min(width, n) }, async () => {
    while (next < n) {
      const i = next++
      results[i] = await task(i)
    }
  }))
  return results
}

export interface TcpProxy {
  port: number
  /** Refuses new connections and drops the open ones: the store looks down. */
  cut: () => Promise<void>
  /** Keeps listening but resets the open connections and every new one: the store's host went away. */
  reset: () => void
  /** Connections reset on arrival since the last reset(). */
  resetAttempts: () => number
  /** Lets connections through again after cut() or reset(). */
  restore: () => Promise<void>
  /** Keeps the open connections but passes no more bytes: the store hangs. */
  freeze: () => void
  close: () => Promise<void>
}

/** A TCP proxy to `targetPort` that a test can cut and restore (its own fault: the shared service keeps running). */
export async function tcpProxy (t: Teardown, targetPort: number, targetHost = '127.0.0.1'): Promise<TcpProxy> {
  const sockets = new Set<Socket>()
  let resetting = false
  let attempts = 0
  const server = createServer((client) => {
    if (resetting) {
      attempts++
      client.resetAndDestroy()
      return
    }
    const upstream = connect(targetPort, targetHost)
    for (const s of [client, upstream]) {
      sockets.add(s)
      s.on('error', () => {})
      s.on('close', () => { sockets.delete(s); client.destroy(); upstream.destroy() })
    }
    client.pipe(upstream)
    upstream.pipe(client)
  })
  server.on('error', () => {})
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  const cut = async (): Promise<void> => {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()))
    for (const s of sockets) s.destroy()
    await closed
  }
  const reset = (): void => {
    resetting = true
    attempts = 0
    for (const s of sockets) s.resetAndDestroy()
  }
  const restore = async (): Promise<void> => {
    resetting = false
    if (server.listening) return
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, '127.0.0.1', () => { server.off('error', reject); resolve() })
    })
  }
  const freeze = (): void => { for (const s of sockets) s.pause() }
  const close = async (): Promise<void> => {
    if (server.listening) await cut()
    for (const s of sockets) s.destroy()
  }
  t.teardown(close)
  return { port, cut, reset, resetAttempts: () => attempts, restore, freeze, close }
}

export interface SpawnedServer {
  pid: number
  port: number
  /** WORKER_PORT: where a ROLE=worker process (alone or in a cluster) serves its probes and metrics. */
  workerPort: number
  output: () => string
  exited: Promise<number | null>
  kill: (signal: NodeJS.Signals) => void
}

/**
 * Runs the built server (`npm test` builds first) on random ports with the test database, killed at teardown. ROLE=api
 * unless `env` says otherwise: no relay of it takes the shared events.
 */
export function spawnServer (t: Teardown, env: Record<string, string> = {}): SpawnedServer {
  // Below the kernel's ephemeral range (32768-60999 here), where outgoing connections of every process on the
  // machine take their local ports: a listening port picked there can be taken meanwhile (EADDRINUSE).
  const port = 20000 + 2 * Math.floor(Math.random() * 6000)
  const workerPort = port + 1
  const server = spawn(process.execPath, ['dist/src/server.js'], {
    env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', DATABASE_URL: TEST_DATABASE_URL, ROLE: 'api', WORKER_PORT: String(workerPort), EMBEDDED_MONGO_PATH: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let output = ''
  server.stdout.on('data', (d) => { output += d })
  server.stderr.on('data', (d) => { output += d })
  const exited = once(server, 'exit').then(([code]) => code as number | null)
  t.teardown(() => { if (server.exitCode === null) server.kill('SIGKILL') })
  return { pid: server.pid ?? 0, port, workerPort, output: () => output, exited, kill: (signal) => server.kill(signal) }
}
