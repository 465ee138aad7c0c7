import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { eventually, jitHeaders, uniq } from '../helper.js'
import { webhookMessageId } from '../../src/webhooks/queue.js'
import { balances, createCardholder, effectExists, fixture, holdOf, postWebhook, withTokens } from './webhooks-helpers.js'
import { buildIsolated } from './consumer-helpers.js'
const postJit = (app: FastifyInstance, body: unknown) => app.inject({ method: 'POST', url: '/marqeta/jit', headers: jitHeaders, payload: body as object })

// One idempotency key for both paths (DESIGN §5): the gateway and the webhooks key effects the same way.
t.test('the JIT gateway and the webhooks share effect keys', async (t) => {
  // Queues of its own: only this app processes what it posts, so the tests wait until each item was processed.
  const { app, queues, waitSettled } = await buildIsolated(t)
  const { db } = app
  const processed = (item: unknown): Promise<void> => waitSettled(queues.webhooks, webhookMessageId('transactions', item))

  t.test('the worked scenario through the gateway, then the clearing webhook, then the clearing at the gateway', async (t) => {
    const { user, card } = await createCardholder(db, 100_00)
    const tok: Record<string, string> = { 'user-ada': user, 'card-ada-1': card }
    for (const name of ['jit-0001', 'jit-0002', 'jit-0004', 'jit-0005', 'txn-auth-0001', 'txn-incr-0002', 'txn-apc-0004', 'txn-clear-0005']) tok[name] = uniq(name.split('-')[0])
    const auth = withTokens(fixture('jit-authorization.json'), tok)
    t.equal((await postJit(app, auth)).statusCode, 200)
    t.equal((await postJit(app, withTokens(fixture('jit-authorization-incremental.json'), tok))).statusCode, 200)
    t.equal((await postJit(app, withTokens(fixture('jit-auth-plus-capture.json'), tok))).statusCode, 200)
    t.same(await balances(db, user), { available: 40_58, ledger: 92_75, pending: 52_17, debitsPosted: 7_25, creditsPosted: 100_00 })

    // The webhooks of the three approvals: already done at the gateway.
    const approvals = [auth, withTokens(fixture('jit-authorization-incremental.json'), tok), withTokens(fixture('jit-auth-plus-capture.json'), tok)]
    t.equal((await postWebhook(app, { transactions: approvals })).statusCode, 200)
    const clearing = withTokens(fixture('webhook-clearing.json'), tok)
    t.equal((await postWebhook(app, clearing)).statusCode, 200)
    await eventually(async () => (await holdOf(db, tok['jit-0001']))?.status === 'POSTED')
    // The same clearing reaching the gateway: recorded, no second posting.
    const atGateway = await postJit(app, clearing.transactions[0])
    t.equal(atGateway.statusCode, 200)
    for (const item of [...approvals, clearing.transactions[0]]) await processed(item)
    t.same(await balances(db, user), { available: 42_58, ledger: 42_58, pending: 0, debitsPosted: 57_42, creditsPosted: 100_00 })
  })

  t.test('an approval that Marqeta reports DECLINED has its hold voided; one that timed out too', async (t) => {
    const { user, card } = await createCardholder(db, 100_00)
    const declined = { 'user-ada': user, 'card-ada-1': card, 'jit-0001': uniq('jit'), 'txn-auth-0001': uniq('txn') }
    const lateAnswer = { 'user-ada': user, 'card-ada-1': card, 'jit-0001': uniq('jit'), 'txn-auth-0001': uniq('txn') }
    const first = withTokens(fixture('jit-authorization.json'), declined)
    const second = withTokens(fixture('jit-authorization.json'), lateAnswer)
    t.equal((await postJit(app, first)).statusCode, 200)
    t.equal((await postJit(app, second)).statusCode, 200)
    t.equal((await balances(db, user)).available, 100_00 - 2 * 42_17)

    const networkDeclined = { ...first, state: 'DECLINED', response: { code: '1016', memo: 'declined by the network' } }
    const timedOut = { ...second, state: 'PENDING', gpa_order: { ...second.gpa_order, funding: { gateway_log: { timed_out: true, duration: 3001 } } } }
    t.equal((await postWebhook(app, { transactions: [networkDeclined, timedOut] })).statusCode, 200)
    await eventually(async () => (await holdOf(db, declined['jit-0001']))?.status === 'VOIDED' && (await holdOf(db, lateAnswer['jit-0001']))?.status === 'VOIDED')
    t.same(await balances(db, user), { available: 100_00, ledger: 100_00, pending: 0, debitsPosted: 0, creditsPosted: 100_00 })
    t.ok(await effectExists(db, `${declined['jit-0001']}:void`))
  })
})
