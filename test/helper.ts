import { randomBytes } from 'node:crypto'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../src/app.js'
import { developmentSecrets, loadConfig, type Config } from '../src/config.js'

export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

/** A validated config for tests: the test database, quiet logs, and any overrides (as environment strings). */
export function testConfig (overrides: Record<string, string> = {}): Config {
  return loadConfig({
    DATABASE_URL: TEST_DATABASE_URL,
    LOG_LEVEL: 'silent',
    MONGO_URL: process.env.MONGO_URL ?? 'embedded',
    ...overrides
  }, () => {})
}

interface Teardown { teardown: (fn: () => unknown) => void }

/** A fresh app per test (file), closed when the test ends. */
export async function build (t: Teardown, overrides: Record<string, string> = {}): Promise<FastifyInstance> {
  const app = await buildApp(testConfig(overrides), { logger: false })
  t.teardown(() => app.close())
  await app.ready()
  return app
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

export interface SpawnedServer {
  port: number
  output: () => string
  exited: Promise<number | null>
  kill: (signal: NodeJS.Signals) => void
}

/** Runs the built server (`npm test` builds first) on a random port with the test database, killed at teardown. */
export function spawnServer (t: Teardown, env: Record<string, string> = {}): SpawnedServer {
  const port = 40000 + Math.floor(Math.random() * 20000)
  const server = spawn(process.execPath, ['dist/src/server.js'], {
    env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', DATABASE_URL: TEST_DATABASE_URL, RUN_WORKERS: 'false', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let output = ''
  server.stdout.on('data', (d) => { output += d })
  server.stderr.on('data', (d) => { output += d })
  const exited = once(server, 'exit').then(([code]) => code as number | null)
  t.teardown(() => { if (server.exitCode === null) server.kill('SIGKILL') })
  return { port, output: () => output, exited, kill: (signal) => server.kill(signal) }
}
