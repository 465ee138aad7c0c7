import t from 'tap'
import fc from 'fast-check'
import { MAX_AMOUNT_UNITS, currencyExponent, formatMinor, parseAmount } from '../../../src/money.js'

const ok = (minor: bigint) => ({ ok: true, minor })

t.test('amounts are values: 12.5, "12.50", "12.500" and " 12.5 " are 1250 minor units', async (t) => {
  for (const v of [12.5, '12.50', '12.500', ' 12.5 ', '0012.5']) t.match(parseAmount(v, 2), ok(1250n), JSON.stringify(v))
  t.match(parseAmount(0.1 + 0.2, 2), { ok: false, error: 'too_many_decimals' }, 'a float artefact is not rounded away')
  t.match(parseAmount(42.17, 2), ok(4217n), 'the shortest representation of a JSON number is exact')
  t.match(parseAmount('7', 0), ok(7n))
  t.match(parseAmount('1.234', 3), ok(1234n))
})

t.test('what is not a valid amount, and why', async (t) => {
  const cases: Array<[unknown, number, string]> = [
    ['12.345', 2, 'too_many_decimals'], [12.345, 2, 'too_many_decimals'], ['1.5', 0, 'too_many_decimals'],
    [-5, 2, 'negative'], ['-0.01', 2, 'negative'], ['-0', 2, 'not_a_number'],
    ['1e3', 2, 'exponent'], ['1E-2', 2, 'exponent'], [1e21, 2, 'too_large'], [1e-7, 2, 'too_many_decimals'],
    ['1000000000000', 2, 'too_large'], [1e12, 2, 'too_large'], ['999999999999.99', 2, 'ok'],
    ['abc', 2, 'not_a_number'], ['12.', 2, 'not_a_number'], ['.5', 2, 'not_a_number'], ['+5', 2, 'not_a_number'],
    ['0x10', 2, 'not_a_number'], ['1,5', 2, 'not_a_number'], [Number.NaN, 2, 'not_a_number'], [Infinity, 2, 'not_a_number'],
    [true, 2, 'not_a_number'], [{}, 2, 'not_a_number'], [undefined, 2, 'missing'], [null, 2, 'missing'], ['', 2, 'missing']
  ]
  for (const [value, exponent, error] of cases) {
    const parsed = parseAmount(value, exponent)
    if (error === 'ok') t.equal(parsed.ok, true, JSON.stringify(value))
    else t.match(parsed, { ok: false, error }, `${String(value)} (${typeof value}) → ${error}`)
  }
})

t.test('currency exponents come from ISO 4217', async (t) => {
  t.equal(currencyExponent('USD'), 2)
  t.equal(currencyExponent('JPY'), 0)
  t.equal(currencyExponent('BHD'), 3)
  t.equal(currencyExponent('XXQ'), undefined)
  t.equal(currencyExponent('usd'), undefined)
})

t.test('formatting then parsing round-trips, and the number and string forms are equal', async (t) => {
  const exponent = fc.integer({ min: 0, max: 3 })
  const property = fc.property(exponent, fc.bigInt({ min: 0n, max: MAX_AMOUNT_UNITS * 1000n - 1n }), (exp, raw) => {
    const minor = raw % (MAX_AMOUNT_UNITS * 10n ** BigInt(exp))
    for (const fixed of [true, false]) {
      const text = formatMinor(minor, exp, fixed)
      const fromString = parseAmount(text, exp)
      const fromNumber = parseAmount(Number(text), exp)
      if (!fromString.ok || fromString.minor !== minor) return false
      if (!fromNumber.ok || fromNumber.minor !== minor) return false
      if (fromString.text !== fromNumber.text) return false
    }
    return true
  })
  // fast-check prints the seed and the shrunk counterexample on failure.
  t.doesNotThrow(() => fc.assert(property, { numRuns: 2000 }))
})

t.test('formatMinor', async (t) => {
  t.equal(formatMinor(1250n, 2), '12.50')
  t.equal(formatMinor(1250n, 2, false), '12.5')
  t.equal(formatMinor(5, 2), '0.05')
  t.equal(formatMinor(-5, 2), '-0.05')
  t.equal(formatMinor(100, 2, false), '1')
  t.equal(formatMinor(7, 0), '7')
})
