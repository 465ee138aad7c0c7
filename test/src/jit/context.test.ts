import t from 'tap'
import pg from 'pg'
import { PgContextSource, allContextParts } from '../../../src/jit/context.js'
import type { Queryable } from '../../../src/db.js'
import { TEST_DATABASE_URL } from '../../helper.js'
import { cardholder } from '../../jit-fixtures.js'

const pool = new pg.Pool({ connectionString: TEST_DATABASE_URL, max: 4 })
t.teardown(() => pool.end())

/** The real pool, counting the statements sent through it. */
function counted (db: pg.Pool): Queryable & { statements: number } {
  const q: Queryable & { statements: number } = {
    statements: 0,
    query: async (text, values) => {
      q.statements++
      return await db.query(text as pg.QueryConfig, values)
    }
  }
  return q
}

t.test('loads asked for while a statement runs share the next one, each answered with its own parts', async (t) => {
  const holders = await Promise.all(Array.from({ length: 6 }, (_, i) => cardholder(pool, { cardState: i % 2 === 0 ? 'ACTIVE' : 'SUSPENDED' })))
  const db = counted(pool)
  const source = new PgContextSource(db, { maxInFlight: 1 })
  const loads = holders.map((h, i) => source.parts(h.card, h.user, i % 3 === 0 ? allContextParts : ['card', 'user']))
  const parts = await Promise.all(loads)
  t.equal(db.statements, 2, 'the first alone (nothing was running), the five others together')
  parts.forEach((p, i) => {
    t.equal(p.card?.token, holders[i].card)
    t.equal(p.card?.state, i % 2 === 0 ? 'ACTIVE' : 'SUSPENDED')
    t.equal(p.user?.token, holders[i].user)
    t.equal(p.versions?.card?.scope, holders[i].user, 'a card\'s version is its owner\'s')
    t.equal(p.userControls !== undefined, i % 3 === 0, 'only the parts asked for')
  })
})

t.test('an unknown card and user: null parts, versions to check against', async (t) => {
  const source = new PgContextSource(pool)
  const p = await source.parts('no-such-card', 'no-such-user', allContextParts)
  t.equal(p.card, null)
  t.equal(p.user, null)
  t.same(p.versions?.card, { scope: 'no-such-user', version: 0 })
})

t.test('a failed statement fails every load it carried, and the next loads go on', async (t) => {
  const broken = new pg.Pool({ connectionString: TEST_DATABASE_URL.replace(/\/[^/]*$/, '/no_such_database'), max: 1, connectionTimeoutMillis: 2000 })
  t.teardown(() => broken.end())
  const source = new PgContextSource(broken, { maxInFlight: 1 })
  const results = await Promise.allSettled([1, 2, 3].map((i) => source.parts(`c${i}`, `u${i}`, ['user'])))
  t.same(results.map((r) => r.status), ['rejected', 'rejected', 'rejected'])
})
