// Runs the tap suite and ends with the plain line CI reads: `N passed, N failed`.
// tap's own closing comment `# { total, pass, fail, ... }` counts assertions; a file that crashes counts as failed.
import { spawn, spawnSync } from 'node:child_process'

// Test files that use the database through a plain pool (not an app, which migrates at boot) need the schema before
// the first of them starts: a freshly created test database would otherwise fail them depending on the file order.
const testDatabase = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const migrated = spawnSync(process.execPath, ['dist/src/migrate-cli.js'], { env: { ...process.env, DATABASE_URL: testDatabase }, stdio: 'inherit' })
if (migrated.status !== 0) {
  console.log('\n0 passed, 1 failed')
  process.exit(1)
}

const args = ['tap', '--reporter=tap', ...process.argv.slice(2)]
const child = spawn('npx', args, { stdio: ['ignore', 'pipe', 'inherit'] })
let tail = ''
child.stdout.on('data', (chunk) => {
  process.stdout.write(chunk)
  tail = (tail + chunk.toString()).slice(-4096)
})
child.on('close', (code) => {
  const summary = [...tail.matchAll(/^# \{ (.*) \}$/gm)].pop()?.[1] ?? ''
  const count = (name) => Number(new RegExp(`\\b${name}: (\\d+)`).exec(summary)?.[1] ?? 0)
  let passed = count('pass')
  let failed = count('fail')
  if (summary === '' || (code !== 0 && failed === 0)) failed += 1
  const skipped = count('skip') + count('todo')
  console.log(`\n${passed} passed, ${failed} failed${skipped > 0 ? `, ${skipped} skipped` : ''}`)
  process.exit(code ?? 1)
})
