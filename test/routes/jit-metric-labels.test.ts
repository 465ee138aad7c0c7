import t from 'tap'
import { build, uniq } from '../helper.js'
import { cardholder, jitRequest, postJit } from '../jit-fixtures.js'
import { methodLabel, reasonLabel } from '../../src/metrics.js'

const app = await build(t)

/** Every label value of a metric, as `name=value` pairs. */
async function labelValues (metric: { get: () => Promise<{ values: Array<{ labels: Record<string, unknown> }> }> }, name: string): Promise<Set<string>> {
  return new Set((await metric.get()).values.map((v) => String(v.labels[name])))
}

t.test('a request with a random method adds no label value: it is counted as `other`', async (t) => {
  const ch = await cardholder(app.db, { fundMinor: 10_000 })
  // One known method first, so that `other` is the only value the random ones may add.
  t.equal((await postJit(app, jitRequest({ user: ch.user, card: ch.card, amount: 1 }))).statusCode, 200)
  await postJit(app, jitRequest({ user: ch.user, card: ch.card, amount: 1, method: `pgfs.${uniq('warmup')}` }))
  const decisionsBefore = await labelValues(app.telemetry.jitDecisions, 'method')
  const unknownBefore = await labelValues(app.telemetry.jitUnknownMethods, 'method')
  const randomMethods = Array.from({ length: 5 }, () => `pgfs.${uniq('random')}`)
  for (const method of randomMethods) {
    const res = await postJit(app, jitRequest({ user: ch.user, card: ch.card, amount: 1, method }))
    t.equal(res.statusCode, 200, res.body)
  }
  t.same(await labelValues(app.telemetry.jitDecisions, 'method'), decisionsBefore)
  t.same(await labelValues(app.telemetry.jitUnknownMethods, 'method'), unknownBefore)
  t.same([...unknownBefore], ['other'])
  t.ok(decisionsBefore.has('pgfs.authorization'), 'known methods keep their name')
  const body = (await app.inject({ url: '/metrics' })).body
  for (const method of randomMethods) t.notMatch(body, method)
})

t.test('label values are bounded to the method table and the decline enum', async (t) => {
  t.equal(methodLabel('pgfs.authorization.incremental'), 'pgfs.authorization.incremental')
  t.equal(methodLabel('pgfs.balanceinquiry'), 'pgfs.balanceinquiry')
  t.equal(methodLabel('PGFS.AUTHORIZATION'), 'other')
  t.equal(methodLabel('x'.repeat(500)), 'other')
  t.equal(reasonLabel('INSUFFICIENT_FUNDS'), 'INSUFFICIENT_FUNDS')
  t.equal(reasonLabel('DEADLINE'), 'DEADLINE')
  t.equal(reasonLabel('STALE_CONTEXT'), 'STALE_CONTEXT')
  t.equal(reasonLabel(undefined), '')
  t.equal(reasonLabel('made up by someone'), 'other')
})
