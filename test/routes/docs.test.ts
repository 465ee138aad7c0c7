import t from 'tap'
import { execSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { validate, compileErrors } from '@readme/openapi-parser'
import { build } from '../helper.js'

const CHROMIUM = '/usr/bin/chromium'

interface Operation {
  tags?: string[]
  security?: Array<Record<string, string[]>>
  responses: Record<string, { description?: string, content?: Record<string, { example?: unknown, schema?: unknown }> }>
  requestBody?: { content: Record<string, { example?: unknown }> }
}

t.test('GET /docs/json is a valid OpenAPI document that lists every route with its errors, an example and its credentials', async (t) => {
  const app = await build(t)
  const res = await app.inject({ method: 'GET', url: '/docs/json' })
  t.equal(res.statusCode, 200, 'the document needs no credentials')
  const doc = res.json()

  const result = await validate(structuredClone(doc))
  t.ok(result.valid, result.valid ? 'valid OpenAPI 3.1' : compileErrors(result))

  t.same(Object.keys(doc.components.securitySchemes).sort(), ['adminBearer', 'jitBasic', 'webhookBasic'])
  const paths = doc.paths as Record<string, Record<string, Operation>>
  for (const path of ['/marqeta/jit', '/marqeta/webhooks', '/v1/users', '/v1/users/{token}', '/v1/users/{token}/loads',
    '/v1/users/{token}/unloads', '/v1/users/{token}/balances', '/v1/cards', '/v1/cards/{token}', '/v1/velocitycontrols',
    '/v1/velocitycontrols/{token}', '/v1/authcontrols', '/v1/authcontrols/{token}', '/v1/transactions',
    '/v1/transactions/{jit_token}', '/v1/jit/stats', '/health', '/ready']) {
    t.ok(paths[path], `${path} is documented`)
  }
  t.notOk(Object.keys(paths).some((p) => p.startsWith('/docs')), 'the docs do not document themselves')

  for (const [path, operations] of Object.entries(paths)) {
    for (const [method, op] of Object.entries(operations)) {
      const name = `${method.toUpperCase()} ${path}`
      t.ok(op.tags !== undefined && op.tags.length > 0, `${name} has a tag`)
      const statuses = Object.keys(op.responses)
      t.ok(statuses.some((s) => s.startsWith('2')), `${name} documents its success`)
      for (const [status, response] of Object.entries(op.responses)) {
        t.ok(response.description !== undefined && response.description !== 'Default Response', `${name} ${status} is described`)
      }
      // Every route answers errors in the documented shape: at least one error status with an example.
      const errorsWithExample = statuses.filter((s) => Number(s) >= 400 && Object.values(op.responses[s].content ?? {}).some((c) => c.example !== undefined))
      t.ok(errorsWithExample.length > 0, `${name} documents an error with an example`)
      const successWithExample = statuses.filter((s) => s.startsWith('2') && Object.values(op.responses[s].content ?? {}).some((c) => c.example !== undefined))
      t.ok(successWithExample.length > 0, `${name} has a success example`)
      if (op.requestBody !== undefined) {
        t.ok(Object.values(op.requestBody.content).some((c) => c.example !== undefined), `${name} has a request example`)
      }
      if (path.startsWith('/v1/')) {
        t.same(op.security, [{ adminBearer: [] }], `${name} needs the bearer token`)
        t.ok(statuses.includes('401'), `${name} documents 401`)
      }
    }
  }
  t.same(paths['/marqeta/jit'].post.security, [{ jitBasic: [] }])
  t.same(paths['/marqeta/webhooks'].post.security, [{ webhookBasic: [] }])
  t.same(Object.keys(paths['/marqeta/jit'].post.responses).sort(), ['200', '400', '401', '402', '503'])
})

t.test('the /docs UI page is served with its own assets and no request leaves the machine', async (t) => {
  const app = await build(t)
  const page = await app.inject({ method: 'GET', url: '/docs' })
  t.equal(page.statusCode, 200)
  t.match(page.headers['content-type'], /text\/html/)
  const assets = [...page.body.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1])
  t.ok(assets.length >= 3, 'the page names its scripts and styles')
  for (const asset of assets) {
    t.match(asset, /^(\/docs\/|\.\/)/, `${asset} is served by the service itself`)
    const res = await app.inject({ method: 'GET', url: asset.startsWith('./') ? `/docs/${asset.slice(2)}` : asset })
    t.equal(res.statusCode, 200, `${asset} is served`)
  }
})

t.test('headless Chromium loads the UI at /docs and finds the JIT route in it', async (t) => {
  if (!existsSync(CHROMIUM)) {
    // Debian's package; .ci/run installs it too (the same guarded line).
    execSync('command -v chromium || (apt-get update -qq && apt-get install -y -qq chromium)', { stdio: 'ignore', shell: '/bin/bash', timeout: 600_000 })
  }
  const { chromium } = await import('playwright-core')
  const app = await build(t)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }

  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync']
  })
  t.teardown(() => browser.close())
  const page = await browser.newPage()
  const foreign: string[] = []
  page.on('request', (request) => {
    const url = new URL(request.url())
    if (url.hostname !== '127.0.0.1' && url.protocol !== 'data:') foreign.push(request.url())
  })
  const response = await page.goto(`http://127.0.0.1:${port}/docs`, { waitUntil: 'load', timeout: 30_000 })
  t.equal(response?.status(), 200)
  // Swagger UI renders each operation as a block whose path element carries data-path.
  const jit = page.locator('.opblock-summary-path[data-path="/marqeta/jit"]')
  await jit.first().waitFor({ state: 'visible', timeout: 30_000 })
  t.equal(await jit.count(), 1, 'the JIT route is listed once')
  t.match(await page.locator('.opblock-post:has(.opblock-summary-path[data-path="/marqeta/jit"])').innerText(), /POST/)
  t.ok(await page.locator('.opblock-summary-path[data-path="/v1/users"]').count() > 0, 'the admin API is listed too')
  t.same(foreign, [], 'the page loads nothing from another host')
})
