import t from 'tap'
import amqp from 'amqplib'
import { build, eventually, uniq } from '../helper.js'
import { processWebhookItem, type ProcessDeps } from '../../src/webhooks/process.js'
import { webhookMessageId } from '../../src/webhooks/queue.js'
import { buildIsolated } from './consumer-helpers.js'
import {
  RABBITMQ_URL, balances, createCardholder, effectExists, fixture, holdOf, jitDebit, jitHold, postWebhook, withTokens
} from './webhooks-helpers.js'

// This app has an exchange and work queues of its own: only its consumers take what it posts, so a test waits until
// each of its items was processed (acked) instead of sleeping, and then checks that nothing else happened.
t.test('webhooks through the queue', async (t) => {
  const { app, queues, waitSettled } = await buildIsolated(t, { RABBITMQ_RETRY_DELAY_MS: '50' })
  const { db } = app
  const processed = (type: string, item: unknown, times = 1): Promise<void> => waitSettled(queues.webhooks, webhookMessageId(type, item), times)

  t.test('the worked scenario: holds, an incremental, a debit, then the clearing webhook gives exact balances', async (t) => {
    const { user, card } = await createCardholder(db, 100_00)
    const tok = { 'user-ada': user, 'card-ada-1': card, 'jit-0001': uniq('jit'), 'jit-0002': uniq('jit'), 'jit-0004': uniq('jit'), 'jit-0005': uniq('jit'), 'txn-clear-0005': uniq('txn'), 'txn-auth-0001': uniq('txn') }
    await jitHold(db, user, card, tok['jit-0001'], 42_17)
    await jitHold(db, user, card, tok['jit-0002'], 10_00, tok['jit-0001'])
    await jitDebit(db, user, card, tok['jit-0004'], 7_25)
    t.same(await balances(db, user), { available: 40_58, ledger: 92_75, pending: 52_17, debitsPosted: 7_25, creditsPosted: 100_00 })

    const clearing = withTokens(fixture('webhook-clearing.json'), tok)
    // Three deliveries of the same webhook, concurrently: one effect.
    const answers = await Promise.all([1, 2, 3].map(() => postWebhook(app, clearing)))
    t.same(answers.map((r) => r.statusCode), [200, 200, 200])
    await processed('transactions', clearing.transactions[0], 3)
    t.same(await balances(db, user), { available: 42_58, ledger: 42_58, pending: 0, debitsPosted: 57_42, creditsPosted: 100_00 })
    t.match(await holdOf(db, tok['jit-0001']), { status: 'POSTED', amount: 52_17, remaining: 0, posted: 50_17 })
    const { rows } = await db.query('SELECT kind, released, amount FROM transfers WHERE id LIKE $1', [`${tok['jit-0005']}:post%`])
    t.same(rows.map((r: any) => [r.kind, Number(r.released), Number(r.amount)]), [['post', 52_17, 50_17]], 'one transfer: the hold released, the clearing posted')

    // The same clearing once more, later: still nothing.
    t.equal((await postWebhook(app, clearing)).statusCode, 200)
    await processed('transactions', clearing.transactions[0], 4)
    t.same((await balances(db, user)).available, 42_58)
  })

  t.test('a timed-out authorization voids its hold; a reversal releases part of another', async (t) => {
    const { user, card } = await createCardholder(db, 200_00)
    const tok = { 'user-bob': user, 'card-bob-1': card, 'jit-0006': uniq('jit'), 'jit-0100': uniq('jit'), 'jit-0101': uniq('jit'), 'txn-rev-0006': uniq('txn'), 'txn-auth-0101': uniq('txn'), 'txn-auth-0100': uniq('txn') }
    await jitHold(db, user, card, tok['jit-0100'], 50_00)
    // Our approval of jit-0101 reached Marqeta too late.
    await jitHold(db, user, card, tok['jit-0101'], 99_99)
    t.equal((await balances(db, user)).available, 50_01)

    const res = await postWebhook(app, withTokens(fixture('webhook-reversal-and-timeout.json'), tok))
    t.equal(res.statusCode, 200)
    await eventually(async () => (await holdOf(db, tok['jit-0101']))?.status === 'VOIDED' && (await holdOf(db, tok['jit-0100']))?.remaining === 37_50)
    t.match(await holdOf(db, tok['jit-0100']), { status: 'PENDING', amount: 50_00, remaining: 37_50 })
    t.same(await balances(db, user), { available: 162_50, ledger: 200_00, pending: 37_50, debitsPosted: 0, creditsPosted: 200_00 })
  })

  t.test('partial reversals release at most what is left, then the hold is voided', async (t) => {
    const { user, card } = await createCardholder(db, 300_00)
    const auth = uniq('jit')
    await jitHold(db, user, card, auth, 120_00)
    const reversal = (jit: string, amount: string) => ({
      transactions: [{
        type: 'authorization.reversal', state: 'CLEARED', token: uniq('txn'), user_token: user, card_token: card, amount, currency_code: 'USD',
        gpa_order_unload: { jit_funding: { token: jit, method: 'pgfs.authorization.reversal', user_token: user, amount, original_jit_funding_token: auth } }
      }]
    })
    const first = reversal(uniq('jit'), '30.00')
    t.equal((await postWebhook(app, first)).statusCode, 200)
    t.equal((await postWebhook(app, first)).statusCode, 200, 'the same reversal again')
    await processed('transactions', first.transactions[0], 2)
    t.equal((await holdOf(db, auth))?.remaining, 90_00)
    const rest = reversal(uniq('jit'), '100.00')
    t.equal((await postWebhook(app, rest)).statusCode, 200)
    await processed('transactions', rest.transactions[0])
    t.match(await holdOf(db, auth), { status: 'VOIDED', remaining: 0 })
    t.same(await balances(db, user), { available: 300_00, ledger: 300_00, pending: 0, debitsPosted: 0, creditsPosted: 300_00 })
  })

  t.test('out of order: the clearing before the authorization webhook, with and without a JIT hold', async (t) => {
    const { user, card } = await createCardholder(db, 100_00)
    const authTxn = (jit: string, method: string, amount: number) => ({
      type: 'authorization', state: 'PENDING', token: uniq('txn'), user_token: user, card_token: card, amount, currency_code: 'USD',
      gpa_order: { jit_funding: { token: jit, method, user_token: user, amount } }
    })
    const clearingTxn = (original: string, amount: number) => ({
      type: 'authorization.clearing', state: 'COMPLETION', token: uniq('txn'), user_token: user, card_token: card, amount, currency_code: 'USD',
      gpa_order: { jit_funding: { token: uniq('jit'), method: 'pgfs.authorization.clearing', user_token: user, amount, original_jit_funding_token: original } }
    })
    // The JIT path held 20.00; the clearing (18.00) arrives first, then the authorization's own webhook.
    const held = uniq('jit')
    await jitHold(db, user, card, held, 20_00)
    t.equal((await postWebhook(app, { transactions: [clearingTxn(held, 18)] })).statusCode, 200)
    await eventually(async () => (await holdOf(db, held))?.status === 'POSTED')
    const heldAuth = authTxn(held, 'pgfs.authorization', 20)
    t.equal((await postWebhook(app, { transactions: [heldAuth] })).statusCode, 200)

    // Marqeta stood in (no JIT hold): the clearing (5.00) comes first, the stand-in authorization after it.
    const standin = uniq('jit')
    t.equal((await postWebhook(app, { transactions: [clearingTxn(standin, 5)] })).statusCode, 200)
    await eventually(async () => effectExists(db, `${standin}:hold`))
    const standinAuth = authTxn(standin, 'pgfs.authorization.standin', 5)
    t.equal((await postWebhook(app, { transactions: [standinAuth] })).statusCode, 200)
    await processed('transactions', heldAuth)
    await processed('transactions', standinAuth)
    t.equal(await holdOf(db, standin), undefined, 'no hold after its clearing')
    t.same(await balances(db, user), { available: 77_00, ledger: 77_00, pending: 0, debitsPosted: 23_00, creditsPosted: 100_00 })
  })

  t.test('an immediate debit that Marqeta declined after us is given back; refunds credit', async (t) => {
    const { user, card } = await createCardholder(db, 50_00)
    const debit = uniq('jit')
    await jitDebit(db, user, card, debit, 7_25)
    const declined = {
      type: 'pindebit', state: 'DECLINED', token: uniq('txn'), user_token: user, card_token: card, amount: 7.25, currency_code: 'USD',
      gpa_order: { jit_funding: { token: debit, method: 'pgfs.pindebit', user_token: user, amount: 7.25 } }
    }
    const refund = {
      type: 'refund', state: 'COMPLETION', token: uniq('txn'), user_token: user, card_token: card, amount: '3.10', currency_code: 'USD',
      gpa_order: { jit_funding: { token: uniq('jit'), method: 'pgfs.refund', user_token: user, amount: '3.10' } }
    }
    t.equal((await postWebhook(app, { transactions: [declined, refund] })).statusCode, 200)
    await processed('transactions', declined)
    await processed('transactions', refund)
    t.same(await balances(db, user), { available: 53_10, ledger: 53_10, pending: 0, debitsPosted: 7_25, creditsPosted: 60_35 })
  })

  t.test('card and user transitions update states; TERMINATED and CLOSED are final', async (t) => {
    const { user, card } = await createCardholder(db)
    const state = async () => (await db.query('SELECT c.state, u.status FROM cards c JOIN users u ON u.token = c.user_token WHERE c.token = $1', [card])).rows[0]
    t.equal((await postWebhook(app, { cards: [{ token: uniq('ct'), card_token: card, state: 'SUSPENDED', type: 'state.suspended' }] })).statusCode, 200)
    t.equal((await postWebhook(app, { usertransitions: [{ token: uniq('ut'), user_token: user, status: 'SUSPENDED' }] })).statusCode, 200)
    await eventually(async () => { const s = await state(); return s.state === 'SUSPENDED' && s.status === 'SUSPENDED' })

    t.equal((await postWebhook(app, { cards: [{ card_token: card, state: 'TERMINATED' }], usertransitions: [{ user_token: user, status: 'TERMINATED' }] })).statusCode, 200)
    await eventually(async () => { const s = await state(); return s.state === 'TERMINATED' && s.status === 'CLOSED' })
    const reactivate = { cards: [{ card_token: card, state: 'ACTIVE' }], usertransitions: [{ user_token: user, status: 'ACTIVE' }] }
    t.equal((await postWebhook(app, reactivate)).statusCode, 200)
    await processed('cards', reactivate.cards[0])
    await processed('usertransitions', reactivate.usertransitions[0])
    t.same(await state(), { state: 'TERMINATED', status: 'CLOSED' })
  })

  t.test('a poison webhook item is dead-lettered after 3 retries with the reason', async (t) => {
    const token = uniq('poison')
    const poison = { type: 'refund', token, state: 'COMPLETION', currency_code: 'USD', gpa_order: { jit_funding: { token: uniq('jit'), method: 'pgfs.refund', user_token: 'nobody', amount: 'twelve' } } }
    t.equal((await postWebhook(app, { transactions: [poison] })).statusCode, 200)
    await waitSettled(queues.webhooks, webhookMessageId('transactions', poison), 1, 'dead-lettered')
    const dead = await eventually(() => takeFromDlq(`${queues.webhooks}.dlq`, (body) => body.token === token))
    t.match(String(dead.headers['x-failure-reason']), /jit_funding.amount not a number/)
    t.equal(Number(dead.headers['x-retries']), 4)
    t.equal(dead.headers['x-original-routing-key'], 'webhook.transactions')
    t.equal(dead.headers['x-original-queue'], queues.webhooks)
    t.ok(dead.headers['x-first-failed-at'] <= dead.headers['x-dead-lettered-at'], 'when it first failed and when it was dead-lettered')
  })

  t.test('handler time of the messages this instance consumed', async (t) => {
    const values = (await app.telemetry.consumeDuration.get()).values.filter((v) => v.labels.queue === queues.webhooks)
    const sum = values.find((v) => v.metricName?.endsWith('_sum'))?.value ?? 0
    const count = values.find((v) => v.metricName?.endsWith('_count'))?.value ?? 0
    t.comment(`webhooks queue handler: ${count} messages, mean ${count > 0 ? (sum / count * 1000).toFixed(2) : '-'} ms`)
    t.ok(count === 0 || sum / count < 0.05, 'under the 50 ms consume budget on average')
  })
})

/** Takes (acks) the first message of a dead-letter queue that `match`es; every other message goes back. */
async function takeFromDlq (queue: string, match: (body: any) => boolean): Promise<{ body: any, headers: Record<string, any> } | undefined> {
  const connection = await amqp.connect(RABBITMQ_URL)
  try {
    const channel = await connection.createChannel()
    const others: amqp.GetMessage[] = []
    try {
      for (;;) {
        const msg = await channel.get(queue, { noAck: false })
        if (msg === false) return undefined
        let body: any
        try { body = JSON.parse(msg.content.toString()) } catch { body = undefined }
        if (match(body)) {
          channel.ack(msg)
          return { body, headers: msg.properties.headers ?? {} }
        }
        others.push(msg)
      }
    } finally {
      for (const msg of others) channel.nack(msg, false, true)
      await channel.close()
    }
  } finally {
    await connection.close()
  }
}

t.test('processing the same item concurrently moves money once (no broker involved)', async (t) => {
  const app = await build(t, { ROLE: 'api' })
  const { db } = app
  const { user, card } = await createCardholder(db, 10_00)
  const auth = uniq('jit')
  await jitHold(db, user, card, auth, 9_00)
  const deps: ProcessDeps = { db, holdExpirationDays: 7 }
  const clearing = Buffer.from(JSON.stringify({
    type: 'authorization.clearing', state: 'COMPLETION', token: uniq('txn'), user_token: user, card_token: card, amount: 9.5, currency_code: 'USD',
    gpa_order: { jit_funding: { token: uniq('jit'), method: 'pgfs.authorization.clearing', user_token: user, amount: 9.5, original_jit_funding_token: auth } }
  }))
  const outcomes = await Promise.all([1, 2, 3].map(() => processWebhookItem(deps, 'webhook.transactions', clearing)))
  t.same(outcomes.map((o) => o.action === 'ledger' ? o.result.status : o.action).sort(), ['applied', 'duplicate', 'duplicate'])
  t.same(await balances(db, user), { available: 50, ledger: 50, pending: 0, debitsPosted: 9_50, creditsPosted: 10_00 })

  const invalidated: unknown[] = []
  const withCache: ProcessDeps = { ...deps, invalidate: async (what) => { invalidated.push(what) } }
  const outcome = await processWebhookItem(withCache, 'webhook.cards', Buffer.from(JSON.stringify({ card_token: card, state: 'SUSPENDED' })))
  t.match(outcome, { action: 'state', changed: true })
  t.same(invalidated, [{ cards: [card] }])
  t.match(await processWebhookItem(withCache, 'webhook.cards', Buffer.from(JSON.stringify({ card_token: card, state: 'SUSPENDED' }))), { changed: false })
  t.equal(invalidated.length, 1, 'no change, no invalidation')

  // Delivered out of order: the newer transition first, then an older one, which must not undo it.
  const transition = (state: string, at: string): Buffer => Buffer.from(JSON.stringify({ card_token: card, state, created_time: at }))
  t.match(await processWebhookItem(deps, 'webhook.cards', transition('ACTIVE', '2099-01-01T00:00:02Z')), { action: 'state', changed: true })
  t.match(await processWebhookItem(deps, 'webhook.cards', transition('SUSPENDED', '2099-01-01T00:00:01Z')), { action: 'none', reason: /newer state/ })
  t.equal((await db.query('SELECT state FROM cards WHERE token = $1', [card])).rows[0].state, 'ACTIVE')
  const userTransition = (status: string, at: string): Buffer => Buffer.from(JSON.stringify({ user_token: user, status, created_time: at }))
  t.match(await processWebhookItem(deps, 'webhook.usertransitions', userTransition('SUSPENDED', '2099-01-01T00:00:05Z')), { changed: true })
  t.match(await processWebhookItem(deps, 'webhook.usertransitions', userTransition('ACTIVE', '2099-01-01T00:00:04Z')), { action: 'none' })
  t.equal((await db.query('SELECT status FROM users WHERE token = $1', [user])).rows[0].status, 'SUSPENDED')
  // An admin change is stamped with its own time: a transition Marqeta made before it, delivered after it, is older.
  const admin = await createCardholder(db)
  await db.query("UPDATE cards SET state = 'SUSPENDED', state_since = now() WHERE token = $1", [admin.card])
  const stale = Buffer.from(JSON.stringify({ card_token: admin.card, state: 'ACTIVE', created_time: new Date(Date.now() - 60_000).toISOString() }))
  t.match(await processWebhookItem(deps, 'webhook.cards', stale), { action: 'none' })
  t.match(await processWebhookItem(deps, 'webhook.cards', Buffer.from(JSON.stringify({ card_token: admin.card, state: 'ACTIVE' }))), { changed: true }, 'without created_time: now')
  await t.rejects(processWebhookItem(deps, 'webhook.transactions', Buffer.from('{not json')), { name: 'InvalidWebhookItemError' })
  await t.rejects(processWebhookItem(deps, 'webhook.cards', Buffer.from('{}')), { name: 'InvalidWebhookItemError' })
  const unknownUser = Buffer.from(JSON.stringify({ type: 'refund', token: uniq('t'), gpa_order: { jit_funding: { token: uniq('j'), method: 'pgfs.refund', user_token: uniq('nobody'), amount: 1 } } }))
  await t.rejects(processWebhookItem(deps, 'webhook.transactions', unknownUser), /no account for user/)
  t.match(await processWebhookItem(deps, 'webhook.pings', Buffer.from('{"token":"marqeta"}')), { action: 'none', reason: 'ping' })
})
