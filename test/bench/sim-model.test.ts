import t from 'tap'
import { LedgerModel, Zipf, seededRandom } from '../../bench/sim-model.js'
import { amountValue, decimalText, toMinor } from '../../bench/messages.js'

function balances (m: LedgerModel, user: string): string[] {
  const b = m.balances(user)
  return [decimalText(b.availableMinor), decimalText(b.ledgerMinor), decimalText(b.pendingMinor)]
}

t.test('the simulator model follows the worked scenario of the fixtures to the cent', async (t) => {
  // ../shared/fixtures/marqeta/README.md: load 100.00; hold 42.17; +10.00 incremental; debit 7.25; clearing 50.17.
  const m = new LedgerModel()
  m.addUser('ada')
  m.credit('ada', 10000n)
  t.same(m.predict('ada', 4217n), { approve: true, amountMinor: 4217n })
  m.hold('jit-0001', 'ada', 'card-ada-1', 4217n)
  m.increment('jit-0001', 'jit-0002', 1000n)
  t.same(balances(m, 'ada'), ['47.83', '100.00', '52.17'], 'available 47.83 after the incremental')
  m.debit('ada', 725n)
  t.same(balances(m, 'ada'), ['40.58', '92.75', '52.17'])
  t.equal(m.clear('jit-0001', 5017n), 5217n, 'the clearing releases the whole hold')
  t.same(balances(m, 'ada'), ['42.58', '42.58', '0.00'], 'posted debits 57.42, available 42.58')
})

t.test('clearings larger than the hold, second clearings, reversals and voids', async (t) => {
  const m = new LedgerModel()
  m.addUser('bob')
  m.credit('bob', 5000n)
  m.hold('h1', 'bob', 'c1', 2000n)
  m.clear('h1', 2300n)
  t.same(balances(m, 'bob'), ['27.00', '27.00', '0.00'], 'a tip: the clearing posts more than was held')
  m.clear('h1', 500n)
  t.same(balances(m, 'bob'), ['22.00', '22.00', '0.00'], 'a second clearing is a plain posted debit')

  m.hold('h2', 'bob', 'c1', 1500n)
  t.equal(m.release('h2', 400n), 400n, 'a partial reversal')
  t.equal(m.holds.get('h2')!.state, 'PENDING')
  t.equal(m.release('h2', 5000n), 1100n, 'a reversal releases at most what is left')
  t.equal(m.holds.get('h2')!.state, 'VOIDED')
  t.equal(m.release('h2', 100n), 0n, 'nothing left to release')

  m.hold('h3', 'bob', 'c1', 700n)
  m.increment('h3', 'h3-inc', 300n)
  t.equal(m.void('h3'), 1000n, 'a timed-out answer voids the whole hold, incrementals included')
  t.same(balances(m, 'bob'), ['22.00', '22.00', '0.00'])
  m.credit('bob', 150n)
  t.same(balances(m, 'bob'), ['23.50', '23.50', '0.00'], 'a refund credits')
})

t.test('predictions: funds, zero and missing amounts', async (t) => {
  const m = new LedgerModel()
  m.addUser('cy')
  m.credit('cy', 1000n)
  m.hold('h', 'cy', 'c', 600n)
  t.same(m.predict('cy', 400n), { approve: true, amountMinor: 400n }, 'exactly what is available')
  t.same(m.predict('cy', 401n), { approve: false, reason: 'INSUFFICIENT_FUNDS' })
  t.same(m.predict('cy', 0n), { approve: false, reason: 'INVALID_AMOUNT' })
  t.same(m.predict('cy', undefined), { approve: false, reason: 'INVALID_AMOUNT' })
  t.throws(() => m.increment('missing', 'x', 1n))
})

t.test('amounts travel as exact decimals', async (t) => {
  t.equal(decimalText(5n), '0.05')
  t.equal(decimalText(123456789012345n), '1234567890123.45')
  t.equal(decimalText(-1205n), '-12.05')
  t.equal(amountValue(1005n, false), 10.05)
  t.equal(amountValue(1000n, true), '10.00')
  for (const [v, minor] of [[10.05, 1005n], ['12.500', 1250n], [0.1, 10n], ['7', 700n], [42.17, 4217n]] as const) t.equal(toMinor(v), minor, String(v))
  t.throws(() => toMinor('0.001'))
  const wrong: number[] = []
  for (let cents = 0; cents < 100_000; cents += 7) if (toMinor(amountValue(BigInt(cents), false)) !== BigInt(cents)) wrong.push(cents)
  t.same(wrong, [], 'every cent amount survives a JSON number round trip')
})

t.test('Zipf sampling favours the first ranks and stays in range', async (t) => {
  const zipf = new Zipf(1000, 1.1)
  const random = seededRandom(42)
  const counts = new Array<number>(1000).fill(0)
  for (let i = 0; i < 50_000; i++) counts[zipf.sample(random)]++
  t.ok(counts[0] > counts[1] && counts[1] > counts[10] && counts[10] > counts[500], 'decreasing with rank')
  t.ok(counts[0] / 50_000 > 0.1 && counts[0] / 50_000 < 0.25, `rank 0 share ${counts[0] / 50_000}`)
  t.equal(counts.reduce((a, b) => a + b, 0), 50_000)
  const again = seededRandom(42)
  const first = Array.from({ length: 5 }, () => zipf.sample(again))
  const replay = seededRandom(42)
  t.same(Array.from({ length: 5 }, () => zipf.sample(replay)), first, 'a seed repeats the run')
})
