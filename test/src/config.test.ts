import t from 'tap'
import { developmentSecrets, loadConfig, redactUrl } from '../../src/config.js'

t.test('defaults work on a development machine, with a warning about development secrets', async (t) => {
  const warnings: string[] = []
  const config = loadConfig({}, (m) => warnings.push(m))
  t.equal(config.PORT, 3000)
  t.equal(config.JIT_DEADLINE_MS, 1500)
  t.equal(config.MONGO_URL, 'embedded')
  t.equal(config.HOLD_EXPIRATION_DAYS, 7)
  t.equal(config.JIT_PARTIAL_APPROVAL, false)
  t.match(warnings[0], /ADMIN_TOKEN/)
})

t.test('a bad value stops the boot with a message naming the variable', async (t) => {
  t.throws(() => loadConfig({ PORT: 'eighty' }, () => {}), { message: /PORT/ })
  t.throws(() => loadConfig({ JIT_DEADLINE_MS: '10' }, () => {}), { message: /JIT_DEADLINE_MS/ })
  t.throws(() => loadConfig({ DATABASE_URL: 'mysql://x' }, () => {}), { message: /DATABASE_URL/ })
  t.throws(() => loadConfig({ JIT_BASIC_AUTH_PASSWORD: 'short' }, () => {}), { message: /JIT_BASIC_AUTH_PASSWORD/ })
  t.throws(() => loadConfig({ PG_POOL_MIN: '30', PG_POOL_MAX: '10' }, () => {}), { message: /PG_POOL_MIN/ })
  t.throws(() => loadConfig({ JIT_CUSTOM_HEADER_NAME: 'x-k' }, () => {}), { message: /JIT_CUSTOM_HEADER_VALUE/ })
})

const productionEnv = {
  NODE_ENV: 'production',
  ADMIN_TOKEN: 'a-long-enough-admin-token',
  JIT_BASIC_AUTH_USER: 'u',
  JIT_BASIC_AUTH_PASSWORD: 'p'.repeat(20),
  WEBHOOK_BASIC_AUTH_USER: 'w',
  WEBHOOK_BASIC_AUTH_PASSWORD: 'q'.repeat(20),
  WEBHOOK_SECRET: 'a-webhook-signing-secret',
  MONGO_URL: 'mongodb://mongo:27017/jit'
}

t.test('production requires every secret', async (t) => {
  t.throws(() => loadConfig({ NODE_ENV: 'production', ADMIN_TOKEN: 'a-long-enough-admin-token' }, () => {}), { message: /must be set when NODE_ENV=production/ })
  t.throws(() => loadConfig({ NODE_ENV: 'production' }, () => {}), { message: /JIT_BASIC_AUTH_USER/ })
  const config = loadConfig(productionEnv, () => { t.fail('no warning in production') })
  t.equal(config.ADMIN_TOKEN, 'a-long-enough-admin-token')
  t.equal(config.WEBHOOK_SECRET, 'a-webhook-signing-secret')
})

t.test('production without WEBHOOK_SECRET stops the boot naming the variable', async (t) => {
  const { WEBHOOK_SECRET: _, ...env } = productionEnv
  t.throws(() => loadConfig(env, () => {}), { message: /WEBHOOK_SECRET must be set when NODE_ENV=production/ })
  t.throws(() => loadConfig({ ...env, WEBHOOK_SECRET: '' }, () => {}), { message: /WEBHOOK_SECRET/ })
  // Every missing secret is named at once, WEBHOOK_SECRET included.
  t.throws(() => loadConfig({ NODE_ENV: 'production', MONGO_URL: productionEnv.MONGO_URL }, () => {}), { message: /ADMIN_TOKEN.*WEBHOOK_SECRET must be set/ })
  t.doesNotThrow(() => loadConfig({ ...env, NODE_ENV: 'development' }, () => {}), 'outside production the signature stays optional')
})

t.test('production refuses the development secrets of .env.example', async (t) => {
  t.throws(() => loadConfig({ ...productionEnv, ADMIN_TOKEN: developmentSecrets.ADMIN_TOKEN }, () => {}), { message: /ADMIN_TOKEN must not keep the development value/ })
  t.throws(() => loadConfig({ ...productionEnv, JIT_BASIC_AUTH_PASSWORD: developmentSecrets.JIT_BASIC_AUTH_PASSWORD }, () => {}), { message: /JIT_BASIC_AUTH_PASSWORD/ })
  t.throws(() => loadConfig({ ...productionEnv, WEBHOOK_BASIC_AUTH_PASSWORD: developmentSecrets.WEBHOOK_BASIC_AUTH_PASSWORD }, () => {}), { message: /WEBHOOK_BASIC_AUTH_PASSWORD/ })
})

t.test('production refuses the embedded MongoDB with a message naming MONGO_URL', async (t) => {
  t.throws(() => loadConfig({ ...productionEnv, MONGO_URL: 'embedded' }, () => {}), { message: /MONGO_URL=embedded is for development only/ })
  const { MONGO_URL: _, ...env } = productionEnv
  t.throws(() => loadConfig(env, () => {}), { message: /MONGO_URL/ }, 'the default (embedded) is refused too')
  t.equal(loadConfig({ ...productionEnv, NODE_ENV: 'development', MONGO_URL: 'embedded' }, () => {}).MONGO_URL, 'embedded')
})

t.test('URLs in messages have their password redacted', async (t) => {
  t.equal(redactUrl('postgres://app:s3cret@db:5432/x'), 'postgres://app:***@db:5432/x')
  t.notMatch(redactUrl('amqp://guest:guest@127.0.0.1:5672'), /guest@/)
})
