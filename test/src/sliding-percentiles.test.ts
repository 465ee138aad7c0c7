import t from 'tap'
import { SlidingPercentiles } from '../../src/sliding-percentiles.js'

t.test('percentiles of what the window holds, to three significant digits', async (t) => {
  let now = 1_000_000
  const window = new SlidingPercentiles(600_000, 5, () => now)
  t.same(window.percentiles([50, 99]), [null, null], 'nothing recorded yet')
  for (let v = 1; v <= 1000; v++) window.record(v * 100)
  const [p50, p99, p100] = window.percentiles([50, 99, 100]) as number[]
  t.ok(Math.abs(p50 - 50_000) <= 50, `p50 ${p50}`)
  t.ok(Math.abs(p99 - 99_000) <= 99, `p99 ${p99}`)
  t.ok(Math.abs(p100 - 100_000) <= 100, `max ${p100}`)
  now += 300_000
  window.record(7)
  t.equal(window.percentiles([100])[0]! >= 99_900, true, 'half a window later the old values still count')
})

t.test('values age out a slot at a time', async (t) => {
  let now = 0
  const window = new SlidingPercentiles(10_000, 5, () => now)
  window.record(1000)
  now = 2_000
  window.record(10)
  t.equal(window.percentiles([100])[0], 1000, 'both slots in the window')
  now = 10_500
  t.equal(window.percentiles([100])[0], 10, 'the first slot left the window')
  now = 12_000
  t.same(window.percentiles([50]), [null], 'and then the second')
  window.record(3)
  t.equal(window.percentiles([50])[0], 3, 'a slot whose turn came back starts empty')
})
