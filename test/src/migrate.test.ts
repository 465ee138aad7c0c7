import t from 'tap'
import pg from 'pg'
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { migrate } from '../../src/migrate.js'
import { TEST_DATABASE_URL, uniq } from '../helper.js'

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
