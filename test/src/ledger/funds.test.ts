import t from 'tap'
import fc from 'fast-check'
import { uniq } from '../../helper.js'
import { formatMinor } from '../../../src/money.js'
import { availableMinor, load, unload } from '../../../src/ledger/funds.js'
import { newCardholder, testPool } from './helper.js'

t.test('loads and unloads through ledger_admin_move', async (t) => {
  const db = await testPool(t)
  const { user } = await newCardholder(db, 'fund')
  const move = (amount: bigint, key = uniq('fund-k')) => ({ user_token: user, currency_code: 'USD', amount_minor: amount, effect_key: key })

  const key = uniq('fund-k')
  const first = await load(db, move(10_00n, key))
  t.equal(first.status, 'applied')
  t.equal(availableMinor(first.account!), 10_00n)
  const again = await load(db, move(10_00n, key))
  t.equal(again.status, 'duplicate', 'exactly once per effect key')
  t.equal(availableMinor(again.account!), 10_00n)

  t.match(await unload(db, move(10_01n)), { status: 'declined', reason: 'INSUFFICIENT_FUNDS' })
  const out = await unload(db, move(10_00n))
  t.equal(out.status, 'applied')
  t.equal(availableMinor(out.account!), 0n)
  t.match(await load(db, { ...move(1n), user_token: uniq('nobody') }), { status: 'no_account' })
  await t.rejects(load(db, move(0n)), /positive/)

  const { rows } = await db.query(
    `SELECT t.kind, t.code, t.amount::text, a.user_token FROM transfers t JOIN accounts a ON a.id = t.credit_account_id
      WHERE t.id = $1`, [key])
  t.same(rows, [{ kind: 'single', code: 'load', amount: '1000', user_token: user }], 'the load is one posted transfer crediting the user')
})

t.test('format_minor in SQL writes amounts exactly like formatMinor', async (t) => {
  const db = await testPool(t, 2)
  const cases = fc.sample(fc.tuple(fc.bigInt({ min: -(10n ** 15n), max: 10n ** 15n }), fc.constantFrom(0, 2, 3)), { numRuns: 300, seed: 42 })
  cases.push([0n, 2], [5n, 2], [-5n, 2], [100n, 0], [1005n, 3], [-1n, 3])
  const { rows } = await db.query<{ text: string }>(
    'SELECT format_minor(m::bigint, e) AS text FROM unnest($1::text[], $2::int[]) WITH ORDINALITY AS x(m, e, i) ORDER BY i',
    [cases.map(([m]) => m.toString()), cases.map(([, e]) => e)])
  t.same(rows.map((r) => r.text), cases.map(([m, e]) => formatMinor(m, e)))
})
