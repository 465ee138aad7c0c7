import t from 'tap'
import { build } from '../helper.js'

t.test('the app boots against the real services and reports them up', async (t) => {
  const app = await build(t)
  const res = await app.inject({ method: 'GET', url: '/health' })
  t.equal(res.statusCode, 200)
  const body = res.json()
  for (const dep of ['postgres', 'redis', 'mongodb', 'rabbitmq']) t.equal(body[dep].status, 'up', `${dep} is up: ${JSON.stringify(body[dep])}`)
})
