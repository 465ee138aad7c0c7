import t from 'tap'
import { uniq } from '../helper.js'
import { webhookMessageId } from '../../src/webhooks/queue.js'
import { classifyFailure, RetryLaterError } from '../../src/failures.js'
import { InvalidWebhookItemError } from '../../src/webhooks/transaction.js'
import { parseDlqArgs } from '../../src/dlq.js'
import { runDlqCli } from '../../src/dlq-cli.js'
import { balances, ledger, postWebhook, RABBITMQ_URL } from './webhooks-helpers.js'
import { buildIsolated, queueDepth } from './consumer-helpers.js'

const capture = () => {
  const lines: string[] = []
  return { lines, out: { log: (l: string) => lines.push(l), error: (l: string) => lines.push(`ERR ${l}`) } }
}

t.test('a dead-lettered webhook is listed with its reason, and replaying it (twice) applies it once', async (t) => {
  const { app, queues, waitSettled } = await buildIsolated(t, { RABBITMQ_RETRY_DELAY_MS: '20' })
  const user = uniq('u')
  // A refund for a user the program has not created yet: it can never succeed as it is, so it uses up its tries.
  const refund = {
    type: 'refund', state: 'COMPLETION', token: uniq('txn'), user_token: user, amount: '12.34', currency_code: 'USD',
    gpa_order: { jit_funding: { token: uniq('jit'), method: 'pgfs.refund', user_token: user, amount: '12.34' } }
  }
  const id = webhookMessageId('transactions', refund)
  // Marqeta delivered it twice: two dead letters with one message id.
  t.equal((await postWebhook(app, { transactions: [refund] })).statusCode, 200)
  t.equal((await postWebhook(app, { transactions: [refund] })).statusCode, 200)
  await waitSettled(queues.webhooks, id, 2, 'dead-lettered')
  const dlq = `${queues.webhooks}.dlq`
  t.equal(await queueDepth(dlq), 2)

  const env = { RABBITMQ_URL, LOG_LEVEL: 'silent' }
  const listed = capture()
  t.equal(await runDlqCli(['list', queues.webhooks], env, listed.out), 0)
  const text = listed.lines.join('\n')
  t.match(text, `${dlq}: 2 dead letters`)
  t.match(text, id)
  t.match(text, /reason: no account for user/)
  t.match(text, 'webhook.transactions')
  t.match(text, /tries 4/)
  t.match(text, `"token":"${refund.token}"`.slice(0, 60), 'the first bytes of the message')
  t.equal(await queueDepth(dlq), 2, 'listing takes nothing away')

  // The operator creates the user, then replays.
  await app.db.query('INSERT INTO users (token) VALUES ($1)', [user])
  await ledger(app.db, { kind: 'credit', effect_key: `${user}:load`, user_token: user, currency_code: 'USD', amount_minor: 1_00, forced: true })
  t.equal(await runDlqCli(['replay', queues.webhooks, '--id', 'some-other-id'], env, capture().out), 0)
  t.equal(await queueDepth(dlq), 2, 'a replay by id leaves the others')
  const replayed = capture()
  t.equal(await runDlqCli(['replay', queues.webhooks, '--id', id], env, replayed.out), 0)
  t.match(replayed.lines.join('\n'), 'replayed 2')
  await waitSettled(queues.webhooks, id, 2, 'acked')
  t.same(await balances(app.db, user), { available: 13_34, ledger: 13_34, pending: 0, debitsPosted: 0, creditsPosted: 13_34 }, 'credited once')
  t.equal(await queueDepth(dlq), 0)
  const again = capture()
  t.equal(await runDlqCli(['replay', queues.webhooks, '--all'], env, again.out), 0)
  t.match(again.lines.join('\n'), 'replayed 0')
})

t.test('bad usage exits 2 with a usage line; an unreachable broker exits 1', async (t) => {
  for (const argv of [[], ['lsit'], ['replay'], ['replay', 'q', '--id'], ['replay', '--id', 'x', '--all'], ['list', 'a', 'b'], ['list', '--all']]) {
    const c = capture()
    t.equal(await runDlqCli(argv, { LOG_LEVEL: 'silent' }, c.out), 2, JSON.stringify(argv))
    t.match(c.lines.join('\n'), /usage: npm run dlq -- list/)
  }
  t.same(parseDlqArgs(['list']), { command: 'list', queues: ['webhooks.process', 'transactions.archive'] })
  t.same(parseDlqArgs(['replay', 'webhooks.process.dlq', '--all']), { command: 'replay', queues: ['webhooks.process.dlq'], id: undefined, all: true })
  const c = capture()
  t.equal(await runDlqCli(['list'], { RABBITMQ_URL: 'amqp://guest:guest@127.0.0.1:1' }, c.out), 1)
  t.match(c.lines.join('\n'), /cannot reach RabbitMQ/)
})

t.test('transient and permanent failures', async (t) => {
  const pgError = (code: string) => Object.assign(new Error(`pg ${code}`), { code })
  for (const [err, cause] of [
    [pgError('55P03'), 'lock'], [pgError('40001'), 'lock'], [pgError('40P01'), 'lock'], [pgError('57014'), 'timeout'],
    [pgError('53300'), 'postgres'], [pgError('57P03'), 'postgres'], [pgError('57P01'), 'postgres'], [pgError('57P02'), 'postgres'], [pgError('ECONNREFUSED'), 'postgres'],
    [pgError('53100'), 'postgres'], [pgError('53200'), 'postgres'], [pgError('58030'), 'postgres'], [pgError('25006'), 'postgres'], [pgError('40003'), 'postgres'],
    [new Error('Connection terminated unexpectedly'), 'postgres'], [new Error('timeout exceeded when trying to connect'), 'postgres'],
    [Object.assign(new Error('x'), { name: 'MongoServerSelectionError' }), 'mongodb'],
    [Object.assign(new Error('connection 2 to 127.0.0.1:1 closed'), { name: 'MongoBulkWriteError', writeErrors: [] }), 'mongodb'],
    [new RetryLaterError('archive insert timed out', 'timeout'), 'timeout']
  ] as const) {
    t.match(classifyFailure(err), { transient: true, cause }, err.message)
  }
  for (const err of [new InvalidWebhookItemError('invalid transaction'), new SyntaxError('Unexpected token'), new Error('no account for user u-1 (j:credit)'),
    new Error('ledger refused a forced post'), pgError('23505'), pgError('25001'), pgError('42P01'), Object.assign(new Error('dup'), { name: 'MongoBulkWriteError', writeErrors: [{ code: 121 }] })]) {
    t.match(classifyFailure(err), { transient: false, cause: 'permanent' }, err.message)
  }
})
