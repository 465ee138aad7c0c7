import t from 'tap'
import pg from 'pg'
import { cp, mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildApp } from '../../src/app.js'
import { migrate, schemaLayout, SchemaMismatchError } from '../../src/migrate.js'
import { scratchDatabase, TEST_DATABASE_URL, testConfig, uniq, type Teardown } from '../helper.js'


t.test('migrations are idempotent and two concurrent runs do not collide', async (t) => {
  const pool = new pg.Pool({ connectionString: TEST_DATABASE_URL, max: 4 })
  t.teardown(() => pool.end())
  const table = uniq('mig_probe').replace(/-/g, '_')
  const dir = await mkdtemp(join(tmpdir(), 'migrations-'))
  // A migration that fails if it runs twice: CREATE TABLE without IF NOT EXISTS, plus a counter row.
  await writeFile(join(dir, `900_${table}.sql`), `CREATE TABLE ${table} (n int); INSERT INTO ${table} VALUES (1);`)
  t.teardown(async () => {
    await pool.query(`DROP TABLE IF EXISTS ${table}`)
    await pool.query('DELETE FROM schema_migrations WHERE name = $1', [`900_${table}.sql`])
  })
  const [a, b] = await Promise.all([migrate(pool, dir), migrate(pool, dir)])
  t.same([...a, ...b], [`900_${table}.sql`], 'applied exactly once across both runs')
  t.same(await migrate(pool, dir), [], 'a third run applies nothing')
  const { rows } = await pool.query(`SELECT count(*)::int AS n FROM ${table}`)
  t.equal(rows[0].n, 1)
})

t.test('a failing migration is rolled back and named', async (t) => {
  const pool = new pg.Pool({ connectionString: TEST_DATABASE_URL, max: 2 })
  t.teardown(() => pool.end())
  const dir = await mkdtemp(join(tmpdir(), 'migrations-'))
  const name = `901_${uniq('bad').replace(/-/g, '_')}.sql`
  await writeFile(join(dir, name), 'CREATE TABLE this is not sql;')
  await t.rejects(migrate(pool, dir), { message: new RegExp(`migration ${name} failed`) })
  const { rows } = await pool.query('SELECT 1 FROM schema_migrations WHERE name = $1', [name])
  t.equal(rows.length, 0)
})

t.test('a pooled connection used after migrate keeps the pool statement_timeout; migrations themselves are unbounded', async (t) => {
  // One connection, so the one migrate used is the one the next query gets; the pool's timeout is the app's backstop.
  const pool = new pg.Pool({ connectionString: TEST_DATABASE_URL, max: 1, statement_timeout: 300 } as pg.PoolConfig)
  t.teardown(() => pool.end())
  const before = (await pool.query('SHOW statement_timeout')).rows[0].statement_timeout
  t.equal(before, '300ms')
  const dir = await mkdtemp(join(tmpdir(), 'migrations-'))
  const slow = `902_${uniq('slow').replace(/-/g, '_')}.sql`
  // Longer than the pool's timeout: it only passes if the migration's own transaction lifts it.
  await writeFile(join(dir, slow), 'SELECT pg_sleep(0.6);')
  t.teardown(() => pool.query('DELETE FROM schema_migrations WHERE name = $1', [slow]))
  t.same(await migrate(pool, dir), [slow])
  t.equal((await pool.query('SHOW statement_timeout')).rows[0].statement_timeout, '300ms', 'after a successful run')
  await t.rejects(pool.query('SELECT pg_sleep(0.6)'), { message: /statement timeout/ }, 'the timeout still bites')

  const bad = `903_${uniq('bad').replace(/-/g, '_')}.sql`
  await writeFile(join(dir, bad), 'SELECT pg_sleep(0.4); CREATE TABLE this is not sql;')
  await t.rejects(migrate(pool, dir), { message: new RegExp(`migration ${bad} failed`) })
  t.equal((await pool.query('SHOW statement_timeout')).rows[0].statement_timeout, '300ms', 'after a failed run')
})

t.test('an applied migration whose file changed stops migrate, naming the file', async (t) => {
  const pool = new pg.Pool({ connectionString: TEST_DATABASE_URL, max: 2 })
  t.teardown(() => pool.end())
  const table = uniq('mig_edit').replace(/-/g, '_')
  const name = `904_${table}.sql`
  const dir = await mkdtemp(join(tmpdir(), 'migrations-'))
  await writeFile(join(dir, name), `CREATE TABLE ${table} (n int);`)
  t.teardown(async () => {
    await pool.query(`DROP TABLE IF EXISTS ${table}`)
    await pool.query('DELETE FROM schema_migrations WHERE name = $1', [name])
  })
  t.same(await migrate(pool, dir), [name])
  await writeFile(join(dir, name), `CREATE TABLE ${table} (n int, m int);`)
  const err = await migrate(pool, dir).then(() => undefined, (e: Error) => e)
  t.ok(err instanceof SchemaMismatchError, `a SchemaMismatchError: ${String(err)}`)
  t.match(err?.message, new RegExp(`^${name} changed after it was applied`))
  const { rows } = await pool.query('SELECT count(*)::int AS n FROM information_schema.columns WHERE table_name = $1', [table])
  t.equal(rows[0].n, 1, 'the edited file did not run')
})

t.test('a function file whose text changed is applied again; an unchanged one is not', async (t) => {
  const url = await scratchDatabase(t, 'mig')
  const pool = new pg.Pool({ connectionString: url, max: 2 })
  t.teardown(() => pool.end())
  const functions = await mkdtemp(join(tmpdir(), 'functions-'))
  await cp(schemaLayout.functions, functions, { recursive: true })
  const probe = join(functions, 'zz_migrate_probe.sql')
  const body = (n: number): string => `CREATE OR REPLACE FUNCTION migrate_probe() RETURNS int LANGUAGE sql AS 'SELECT ${n}';\n`
  await writeFile(probe, body(1))
  const layout = { ...schemaLayout, migrations: await mkdtemp(join(tmpdir(), 'migrations-')), functions }

  const first = await migrate(pool, layout.migrations, layout)
  t.equal(first[0], 'baseline.sql', 'a fresh database gets the baseline first')
  t.ok(first.includes('functions/jit_decide.sql') && first.includes('functions/zz_migrate_probe.sql'), 'then every function file')
  t.same(await migrate(pool, layout.migrations, layout), [], 'nothing changed, nothing applied')

  await writeFile(probe, body(2))
  t.same(await migrate(pool, layout.migrations, layout), ['functions/zz_migrate_probe.sql'], 'only the changed file')
  t.equal((await pool.query('SELECT migrate_probe() AS n')).rows[0].n, 2, 'its new body is the one in force')
  t.same(await migrate(pool, layout.migrations, layout), [], 'and it is recorded under its new checksum')
})

/** What the pre-v2 migrations (001_schema.sql to 014) left: their ledger without a checksum column. */
async function legacyDatabase (t: Teardown): Promise<string> {
  const url = await scratchDatabase(t, 'mig')
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  await client.query('CREATE TABLE schema_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())')
  await client.query(`INSERT INTO schema_migrations (name) VALUES ('001_schema.sql')`)
  await client.end()
  return url
}

t.test('a database built by the pre-v2 migrations is refused with a message to recreate it', async (t) => {
  const url = await legacyDatabase(t)
  const pool = new pg.Pool({ connectionString: url, max: 2 })
  t.teardown(() => pool.end())
  const err = await migrate(pool).then(() => undefined, (e: Error) => e)
  t.ok(err instanceof SchemaMismatchError, `a SchemaMismatchError: ${String(err)}`)
  t.match(err?.message, /pre-v2 migrations.*Recreate the database/s)
  const { rows } = await pool.query(`SELECT to_regclass('decisions') AS decisions, to_regclass('schema_functions') AS functions`)
  t.same(rows[0], { decisions: null, functions: null }, 'nothing of the baseline was written')
})

t.test('the app does not boot on a pre-v2 database, and says to recreate it without retrying', async (t) => {
  const url = await legacyDatabase(t)
  const started = Date.now()
  await t.rejects(buildApp(testConfig({ DATABASE_URL: url, PG_BOOT_RETRY_MS: '20000' }), { logger: false }),
    { name: 'SchemaMismatchError', message: /Recreate the database/ })
  t.ok(Date.now() - started < 15_000, 'stopped at once rather than retrying until PG_BOOT_RETRY_MS')
})
