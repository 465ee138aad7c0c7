// Runs the tap suite and ends with the plain line CI reads: `N passed, N failed`.
// tap's own closing comment `# { total, pass, fail, ... }` counts assertions; a file that crashes counts as failed.
import { spawn } from 'node:child_process'

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
