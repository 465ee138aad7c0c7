import { spawnSync } from 'node:child_process'
import pg from 'pg'
import { test } from 'tap'
import { Database } from '../../src/db.js'
import { main, type Io } from '../../src/marqeta-cli.js'
import { MarqetaClient } from '../../src/marqeta-api/client.js'
import { MarqetaHttp } from '../../src/marqeta-api/http.js'
import { passwordProblem, setup, type SetupTarget } from '../../src/marqeta-api/setup.js'
import { TEST_DATABASE_URL, build, uniq } from '../helper.js'
import { cardholder } from '../jit-fixtures.js'
import { FakeMarqeta } from './fake-marqeta.js'

const JIT_PASSWORD = 'Jit-Gateway-Passw0rd!-long'
const WEBHOOK_PASSWORD = 'Webhook-Passw0rd!-long-enough'

function clientFor (fake: FakeMarqeta): MarqetaClient {
  return new MarqetaClient(new MarqetaHttp({
    baseUrl: fake.url, applicationToken: fake.applicationToken, adminAccessToken: fake.adminAccessToken,
    timeoutMs: 2000, retries: 2, retryMinMs: 10, retryMaxMs: 50
  }))
}

function target (over: { jitUrl?: string, jitPassword?: string, secret?: string } = {}): SetupTarget {
  return {
    fundingSource: { token: uniq('pgfs'), name: 'JIT funding gateway', url: over.jitUrl ?? 'https://jit.example.test/marqeta/jit', username: 'marqeta-jit', password: over.jitPassword ?? JIT_PASSWORD },
    webhook: {
      token: uniq('wh'), name: 'jit-gateway', url: 'https://jit.example.test/marqeta/webhooks', events: ['transaction.*', 'cardtransition.*'],
      username: 'marqeta-webhook', password: WEBHOOK_PASSWORD, secret: over.secret ?? 'webhook-secret-1'
    }
  }
}

/** A CLI run with its output captured. */
async function run (argv: string[], env: Record<string, string>): Promise<{ code: number, out: string[], err: string[] }> {
  const out: string[] = []
  const err: string[] = []
  const io: Io = { out: (l) => out.push(l), err: (l) => err.push(l), env }
  return { code: await main(argv, io), out, err }
}

function cliEnv (fake: FakeMarqeta, publicUrl: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    MARQETA_BASE_URL: fake.url,
    MARQETA_APPLICATION_TOKEN: fake.applicationToken,
    MARQETA_ADMIN_ACCESS_TOKEN: fake.adminAccessToken,
    MARQETA_PUBLIC_URL: publicUrl,
    MARQETA_FUNDING_SOURCE_TOKEN: uniq('pgfs'),
    MARQETA_WEBHOOK_TOKEN: uniq('wh'),
    MARQETA_RETRY_MIN_MS: '10',
    JIT_BASIC_AUTH_USER: 'marqeta-jit',
    JIT_BASIC_AUTH_PASSWORD: JIT_PASSWORD,
    WEBHOOK_BASIC_AUTH_USER: 'marqeta-webhook',
    WEBHOOK_BASIC_AUTH_PASSWORD: WEBHOOK_PASSWORD,
    WEBHOOK_SECRET: 'webhook-secret-1',
    ADMIN_TOKEN: 'admin-token-for-marqeta-tests',
    DATABASE_URL: TEST_DATABASE_URL,
    ...extra
  }
}

test('setup registers the gateway and the webhook, and a second run writes nothing', async (t) => {
  const fake = await FakeMarqeta.start()
  t.teardown(() => fake.close())
  const client = clientFor(fake)
  t.teardown(() => client.close())
  const wanted = target()

  const first = await setup(client, wanted)
  t.same(first.map((s) => s.action), ['create', 'create'])
  const source = fake.fundingSources.get(wanted.fundingSource.token)!
  t.match(source, { url: wanted.fundingSource.url, basic_auth_username: 'marqeta-jit', basic_auth_password: JIT_PASSWORD, active: true })
  const webhook = fake.webhooks.get(wanted.webhook.token)!
  t.match(webhook, { active: true, events: ['transaction.*', 'cardtransition.*'], config: { url: wanted.webhook.url, basic_auth_password: WEBHOOK_PASSWORD, secret: 'webhook-secret-1' } })

  const writes = fake.writes().length
  const second = await setup(client, wanted)
  t.same(second.map((s) => s.action), ['unchanged', 'unchanged'])
  t.equal(fake.writes().length, writes, 'the second run made no write call')

  const rotated = { ...wanted, fundingSource: { ...wanted.fundingSource, password: 'Rotated-Passw0rd!-long-one' }, webhook: { ...wanted.webhook, secret: 'webhook-secret-2' } }
  const third = await setup(client, rotated)
  t.same(third.map((s) => [s.action, s.changed]), [['update', ['basic_auth_password']], ['update', ['credentials']]],
    'a changed password or secret is seen (the webhook\'s through the digest in its name: Marqeta masks credentials)')
  t.equal(fake.fundingSources.get(wanted.fundingSource.token)!.basic_auth_password, 'Rotated-Passw0rd!-long-one')
  t.equal(fake.webhooks.get(wanted.webhook.token)!.config.secret, 'webhook-secret-2')
  t.same((await setup(client, rotated)).map((s) => s.action), ['unchanged', 'unchanged'])

  const beforeDry = fake.writes().length
  const moved = { ...rotated, fundingSource: { ...rotated.fundingSource, url: 'https://elsewhere.example.test/marqeta/jit' } }
  const dry = await setup(client, moved, { dryRun: true })
  t.same(dry.map((s) => [s.action, s.changed]), [['update', ['url']], ['unchanged', []]])
  t.equal(fake.writes().length, beforeDry, 'a dry run writes nothing')
  t.equal(fake.fundingSources.get(wanted.fundingSource.token)!.url, wanted.fundingSource.url)
})

test('Marqeta\'s password rule is checked before any call', async (t) => {
  t.equal(passwordProblem(JIT_PASSWORD), undefined)
  t.match(passwordProblem('dev-jit-password-change-me'), /digit/)
  t.match(passwordProblem('Short1!'), /20–50/)
  t.match(passwordProblem('no-upper-case-letter-1234'), /upper-case/)
  t.match(passwordProblem('NoSymbolsInThisPassword1234'), /symbol/)
})

test('npm run marqeta: setup twice, status, dry runs and usage errors', async (t) => {
  const fake = await FakeMarqeta.start()
  t.teardown(() => fake.close())
  const env = cliEnv(fake, 'https://jit.example.test')

  const dry = await run(['setup', '--dry-run'], env)
  t.equal(dry.code, 0, dry.err.join('\n'))
  t.match(dry.out.join('\n'), /program gateway funding source .*: would create[\s\S]*webhook .*: would create[\s\S]*dry run: nothing written/)
  t.equal(fake.writes().length, 0, 'dry run: no write call')

  const first = await run(['setup'], env)
  t.equal(first.code, 0, first.err.join('\n'))
  t.match(first.out.join('\n'), /funding source .*: created[\s\S]*webhook .*: created/)
  t.equal(fake.fundingSources.get(env.MARQETA_FUNDING_SOURCE_TOKEN)?.url, 'https://jit.example.test/marqeta/jit')
  t.equal(fake.webhooks.get(env.MARQETA_WEBHOOK_TOKEN)?.config.url, 'https://jit.example.test/marqeta/webhooks')
  const writes = fake.writes().length

  const second = await run(['setup'], env)
  t.equal(second.code, 0)
  t.match(second.out.join('\n'), /Marqeta already has this configuration: nothing changed/)
  t.equal(fake.writes().length, writes, 'second run: no write call')
  t.notMatch([...first.out, ...first.err, ...second.out].join('\n'), new RegExp(`${JIT_PASSWORD}|${WEBHOOK_PASSWORD}|webhook-secret-1|${fake.adminAccessToken}`), 'no secret printed')

  const status = await run(['status'], env)
  t.equal(status.code, 0, status.err.join('\n'))
  t.match(status.out.join('\n'), /funding source .*: active, url https:\/\/jit.example.test\/marqeta\/jit, user marqeta-jit, password matches/)
  t.match(status.out.join('\n'), /webhook .* \(ours\): active, url https:\/\/jit.example.test\/marqeta\/webhooks, events transaction.\*,cardtransition.\*,usertransition.\*, credentials match/)
  t.notMatch(status.out.join('\n'), new RegExp(JIT_PASSWORD))

  const weak = await run(['setup'], { ...env, JIT_BASIC_AUTH_PASSWORD: 'dev-jit-password-change-me' })
  t.equal(weak.code, 1)
  t.match(weak.err.join('\n'), /JIT_BASIC_AUTH_PASSWORD must contain/)

  const simulateDry = await run(['simulate', 'authorize', '--card', 'c-1', '--amount', '12.50', '--dry-run'], env)
  t.equal(simulateDry.code, 0)
  t.match(simulateDry.out.join('\n'), /would POST \/simulations\/cardtransactions\/authorization {"card_token":"c-1","amount":12.5}/)
  t.equal(fake.writes().length, writes, 'dry runs wrote nothing')

  for (const argv of [[], ['launch'], ['setup', '--force'], ['setup', 'extra'], ['simulate'], ['simulate', 'authorize', '--card', 'c'], ['simulate', 'authorize', '--card', 'c', '--amount', '1e3'], ['simulate', 'clear', '--amount', '1']]) {
    const r = await run(argv, env)
    t.equal(r.code, 2, `${argv.join(' ') || '(nothing)'} is a usage error`)
    t.match(r.err.join('\n'), /usage: npm run marqeta -- <setup\|sync\|simulate\|status>/)
  }

  const unauthorized = await run(['status'], { ...env, MARQETA_ADMIN_ACCESS_TOKEN: 'wrong' })
  t.equal(unauthorized.code, 1)
  t.match(unauthorized.err.join('\n'), /answered 401 error_code 401001/)
})

test('the built command exits 2 with the usage line', async (t) => {
  const r = spawnSync(process.execPath, ['dist/src/marqeta-cli.js', 'nonsense'], { encoding: 'utf8' })
  t.equal(r.status, 2)
  t.match(r.stderr, /unknown command nonsense\nusage: npm run marqeta/)
})

test('simulate authorize: the sandbox sends a real JIT request to this gateway', async (t) => {
  const fake = await FakeMarqeta.start()
  t.teardown(() => fake.close())
  const app = await build(t, { JIT_BASIC_AUTH_USER: 'marqeta-jit', JIT_BASIC_AUTH_PASSWORD: JIT_PASSWORD })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  const env = cliEnv(fake, `http://127.0.0.1:${address.port}`)
  t.equal((await run(['setup'], env)).code, 0)

  const { user, card } = await cardholder(app.db, { fundMinor: 10_000 })
  fake.addUser({ token: user })
  fake.addCard({ token: card, user_token: user })

  const approved = await run(['simulate', 'authorize', '--card', card, '--amount', '12.50'], env)
  t.equal(approved.code, 0, approved.err.join('\n'))
  t.match(approved.out[0], /^transaction .*: authorization PENDING, response 0000/)
  const balances = await app.inject({ method: 'GET', url: `/v1/users/${user}/balances`, headers: { authorization: `Bearer ${app.config.ADMIN_TOKEN}` } })
  t.equal(balances.json().USD.available_balance, '87.50', 'the hold is in our ledger')

  const declined = await run(['simulate', 'authorize', '--card', card, '--amount', '500.00'], env)
  t.equal(declined.code, 0)
  t.match(declined.out[0], /authorization DECLINED, response 1016 INSUFFICIENT_FUNDS/)
})

test('npm run marqeta -- sync: a summary, and --dry-run writes nothing', async (t) => {
  const fake = await FakeMarqeta.start()
  t.teardown(() => fake.close())
  const env = cliEnv(fake, 'https://jit.example.test')
  const user = uniq('mq-cli')
  const card = uniq('mq-clic')
  fake.addUser({ token: user, status: 'SUSPENDED' })
  fake.addCard({ token: card, user_token: user })
  const pool = new pg.Pool({ connectionString: TEST_DATABASE_URL, max: 1 })
  t.teardown(() => pool.end())
  const db = new Database(pool, { slowQueryMs: 10_000 })
  const exists = async (): Promise<number> => (await db.query('SELECT count(*)::int AS n FROM users WHERE token = $1', [user])).rows[0].n

  const dry = await run(['sync', '--dry-run'], env)
  t.equal(dry.code, 0, dry.err.join('\n'))
  t.match(dry.out.join('\n'), /dry run: nothing written; would change:\n {2}users +created 1, updated 0, unchanged 0, skipped 0\n {2}cards +created 1/)
  t.equal(await exists(), 0)

  const real = await run(['sync'], env)
  t.equal(real.code, 0, real.err.join('\n'))
  t.match(real.out.join('\n'), /sync done:\n {2}users +created 1[\s\S]*balances: not touched/)
  t.equal((await db.query('SELECT status FROM users WHERE token = $1', [user])).rows[0].status, 'SUSPENDED')
  t.equal(fake.writes().length, 0, 'sync only reads Marqeta')
})
