import t from 'tap'
import { median } from '../../bench/stats.js'

t.test('median: the middle value, the mean of the middle two for an even count, undefined for none', async (t) => {
  t.equal(median([30, 10, 20]), 20)
  t.equal(median([4, 1, 3, 2]), 2.5)
  t.equal(median([7]), 7)
  t.equal(median([]), undefined)
  const values = [3, 1, 2]
  median(values)
  t.same(values, [3, 1, 2], 'the input is left in its order')
})
