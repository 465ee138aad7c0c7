import pg from 'pg'
import { test } from 'tap'
import { Database } from '../../src/db.js'
import { MarqetaClient } from '../../src/marqeta-api/client.js'
import { MarqetaHttp } from '../../src/marqeta-api/http.js'
import { syncFromMarqeta, type Invalidation } from '../../src/marqeta-api/sync.js'
import { TEST_DATABASE_URL, uniq } from '../helper.js'
import { cardholder } from '../jit-fixtures.js'
import { FakeMarqeta } from './fake-marqeta.js'

test('sync imports users, cards, states and controls; re-runs change nothing; balances are never touched', async (t) => {
  const fake = await FakeMarqeta.start()
  t.teardown(() => fake.close())
  // Two per page, so that every list spans pages.
  const client = new MarqetaClient(new MarqetaHttp({
    baseUrl: fake.url, applicationToken: fake.applicationToken, adminAccessToken: fake.adminAccessToken,
    timeoutMs: 2000, retries: 2, retryMinMs: 10, retryMaxMs: 50
  }), 2)
  t.teardown(() => client.close())
  const pool = new pg.Pool({ connectionString: TEST_DATABASE_URL, max: 2 })
  t.teardown(() => pool.end())
  const db = new Database(pool, { slowQueryMs: 10_000 })

  // Here: A is ACTIVE with a funded account and an ACTIVE card; D is CLOSED. At Marqeta: A SUSPENDED, its card
  // TERMINATED and a second card; B and C are new; D is ACTIVE again (CLOSED is final here).
  const a = await cardholder(db, { fundMinor: 12_345 })
  const d = await cardholder(db, { status: 'CLOSED' })
  const b = uniq('mq-b')
  const c = uniq('mq-c')
  const a2 = uniq('mq-a2')
  const b1 = uniq('mq-b1')
  fake.addUser({ token: a.user, status: 'SUSPENDED' })
  fake.addCard({ token: a.card, user_token: a.user, state: 'TERMINATED' })
  fake.addCard({ token: a2, user_token: a.user, state: 'SUSPENDED' })
  fake.addUser({ token: b, status: 'ACTIVE', first_name: 'Grace', metadata: { tier: 'gold' } })
  fake.addCard({ token: b1, user_token: b })
  fake.addUser({ token: c, status: 'UNVERIFIED' })
  fake.addUser({ token: d.user, status: 'ACTIVE' })
  const v1 = uniq('mq-v1')
  const v2 = uniq('mq-v2')
  const ac1 = uniq('mq-ac1')
  fake.addVelocityControl({ token: v1, association: { user_token: a.user }, amount_limit: 100.00, usage_limit: 5, velocity_window: 'DAY', name: 'daily' })
  fake.addVelocityControl({ token: v2, association: { card_product_token: 'cp-1' }, amount_limit: 50, velocity_window: 'WEEK' })
  fake.addAuthControl({ token: ac1, association: { user_token: b }, merchant_scope: { mcc: '7995' } })

  const ledger = async (): Promise<unknown> => (await db.query(
    `SELECT (SELECT json_agg(a ORDER BY a.id) FROM accounts a WHERE a.user_token = ANY($1)) AS accounts,
            (SELECT count(*) FROM transfers t JOIN accounts a ON a.id IN (t.debit_account_id, t.credit_account_id)
              WHERE a.user_token = ANY($1)) AS transfers`, [[a.user, b, c, d.user]])).rows[0]
  const before = await ledger()
  const state = async (): Promise<Record<string, string | null>> => {
    const { rows } = await db.query(
      `SELECT t.token, coalesce(u.status, c.state) AS state FROM unnest($1::text[]) AS t(token)
         LEFT JOIN users u ON u.token = t.token LEFT JOIN cards c ON c.token = t.token`, [[a.user, b, c, d.user, a.card, a2, b1]])
    return Object.fromEntries(rows.map((r) => [r.token, r.state]))
  }

  const invalidations: Invalidation[] = []
  const invalidate = async (what: Invalidation): Promise<void> => { invalidations.push(what) }
  const first = await syncFromMarqeta({ db, client, invalidate })
  t.same(first.users, { created: 2, updated: 1, unchanged: 0, skipped: 1 })
  t.same(first.cards, { created: 2, updated: 1, unchanged: 0, skipped: 0 })
  t.same(first.velocity_controls, { created: 1, updated: 0, unchanged: 0, skipped: 1 })
  t.same(first.auth_controls, { created: 1, updated: 0, unchanged: 0, skipped: 0 })
  t.match(first.skipped.join('\n'), new RegExp(`users ${d.user}: is CLOSED here \\(final\\)`))
  t.match(first.skipped.join('\n'), new RegExp(`velocity_controls ${v2}: associated with card product cp-1`))
  t.same(await state(), {
    [a.user]: 'SUSPENDED', [b]: 'ACTIVE', [c]: 'SUSPENDED', [d.user]: 'CLOSED', [a.card]: 'TERMINATED', [a2]: 'SUSPENDED', [b1]: 'ACTIVE'
  })
  const imported = (await db.query('SELECT first_name, metadata FROM users WHERE token = $1', [b])).rows[0]
  t.same(imported, { first_name: 'Grace', metadata: { tier: 'gold' } })
  const v1Row = (await db.query('SELECT user_token, amount_limit::text, usage_limit, velocity_window, name, active FROM velocity_controls WHERE token = $1', [v1])).rows[0]
  t.same(v1Row, { user_token: a.user, amount_limit: '10000', usage_limit: 5, velocity_window: 'DAY', name: 'daily', active: true }, 'amount_limit 100.00 in minor units')
  t.same((await db.query('SELECT user_token, mcc, active FROM auth_controls WHERE token = $1', [ac1])).rows[0], { user_token: b, mcc: '7995', active: true })
  t.equal((await db.query('SELECT count(*)::int AS n FROM velocity_controls WHERE token = $1', [v2])).rows[0].n, 0)
  t.same(await ledger(), before, 'accounts and ledger entries untouched')
  t.ok(invalidations.some((i) => i.users?.includes(a.user)), 'the changed user is invalidated in the cache')
  t.ok(invalidations.some((i) => i.cards?.includes(a.card)))
  t.ok(invalidations.some((i) => i.controls?.includes(a.user)))

  const modified = async (): Promise<unknown> => (await db.query(
    'SELECT token, last_modified_time FROM users WHERE token = ANY($1) ORDER BY token', [[a.user, b, c]])).rows
  const modifiedBefore = await modified()
  invalidations.length = 0
  const second = await syncFromMarqeta({ db, client, invalidate })
  t.same(second.users, { created: 0, updated: 0, unchanged: 3, skipped: 1 })
  t.same(second.cards, { created: 0, updated: 0, unchanged: 3, skipped: 0 })
  t.same(second.velocity_controls, { created: 0, updated: 0, unchanged: 1, skipped: 1 })
  t.same(second.auth_controls, { created: 0, updated: 0, unchanged: 1, skipped: 0 })
  t.same(await modified(), modifiedBefore, 'a re-run writes nothing')
  t.same(invalidations, [])

  // Marqeta changes: A is reinstated, V1's limit rises, AC1 is switched off.
  fake.users.get(a.user)!.status = 'ACTIVE'
  fake.velocityControls.get(v1)!.amount_limit = 150.5
  fake.authControls.get(ac1)!.active = false
  const dry = await syncFromMarqeta({ db, client, dryRun: true, invalidate })
  t.same([dry.users.updated, dry.velocity_controls.updated, dry.auth_controls.updated], [1, 1, 1], 'a dry run counts the changes')
  t.equal((await state())[a.user], 'SUSPENDED', 'and writes nothing')
  t.equal((await db.query('SELECT amount_limit::text FROM velocity_controls WHERE token = $1', [v1])).rows[0].amount_limit, '10000')
  t.same(invalidations, [])

  const third = await syncFromMarqeta({ db, client, invalidate })
  t.same([third.users.updated, third.velocity_controls.updated, third.auth_controls.updated], [1, 1, 1])
  t.equal((await state())[a.user], 'ACTIVE')
  t.equal((await db.query('SELECT amount_limit::text FROM velocity_controls WHERE token = $1', [v1])).rows[0].amount_limit, '15050')
  t.equal((await db.query('SELECT active FROM auth_controls WHERE token = $1', [ac1])).rows[0].active, false)
  t.same(await ledger(), before, 'still no balance change')
})

test('sync --dry-run on a fresh program writes nothing at all', async (t) => {
  const fake = await FakeMarqeta.start()
  t.teardown(() => fake.close())
  const client = new MarqetaClient(new MarqetaHttp({
    baseUrl: fake.url, applicationToken: fake.applicationToken, adminAccessToken: fake.adminAccessToken, timeoutMs: 2000, retries: 0, retryMinMs: 10, retryMaxMs: 10
  }))
  t.teardown(() => client.close())
  const pool = new pg.Pool({ connectionString: TEST_DATABASE_URL, max: 1 })
  t.teardown(() => pool.end())
  const db = new Database(pool, { slowQueryMs: 10_000 })
  const user = uniq('mq-dry')
  fake.addUser({ token: user })
  fake.addCard({ token: uniq('mq-dryc'), user_token: user })
  fake.addVelocityControl({ token: uniq('mq-dryv'), association: { user_token: user }, amount_limit: 10 })
  const summary = await syncFromMarqeta({ db, client, dryRun: true })
  t.same([summary.users.created, summary.cards.created, summary.velocity_controls.created], [1, 1, 1])
  t.equal((await db.query('SELECT count(*)::int AS n FROM users WHERE token = $1', [user])).rows[0].n, 0)
  t.equal((await db.query('SELECT count(*)::int AS n FROM velocity_controls WHERE user_token = $1', [user])).rows[0].n, 0)
})
