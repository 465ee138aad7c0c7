import t from 'tap'
import { readFileSync } from 'node:fs'
import { parse } from 'dotenv'
import { ConfigSchema, loadConfig } from '../../src/config.js'
import { MarqetaConfigSchema, loadMarqetaConfig } from '../../src/marqeta-api/config.js'

const text = readFileSync(new URL('../../.env.example', import.meta.url), 'utf8')
// Set (`NAME=`) or documented but unset (`# NAME=`).
const listed = new Set([...text.matchAll(/^(?:# )?([A-Z][A-Z0-9_]*)=/gm)].map((m) => m[1]))

t.test('.env.example lists every variable of the service and of the Marqeta client', async (t) => {
  for (const name of [...Object.keys(ConfigSchema.properties), ...Object.keys(MarqetaConfigSchema.properties)]) {
    t.ok(listed.has(name), `${name} is in .env.example`)
  }
})

t.test('.env.example, read as dotenv reads a .env, is a valid configuration for both', async (t) => {
  const env = parse(text)
  t.equal(env.MARQETA_BASE_URL, 'https://sandbox-api.marqeta.com/v3', 'an inline comment is not part of the value')
  const config = loadConfig(env, () => {})
  t.equal(config.PORT, 3000)
  t.equal(config.JIT_DEADLINE_MS, 1500)
  const marqeta = loadMarqetaConfig(env)
  t.equal(marqeta.MARQETA_FUNDING_SOURCE_NAME, 'JIT funding gateway')
  t.equal(marqeta.MARQETA_APPLICATION_TOKEN, undefined, 'the credentials stay unset until the operator sets them')
})
