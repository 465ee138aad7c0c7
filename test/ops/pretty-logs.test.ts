import t from 'tap'
import { spawn, spawnSync } from 'node:child_process'
import { developmentSecrets } from '../../src/config.js'
import { eventually, freePort, TEST_DATABASE_URL, type Teardown } from '../helper.js'

// The built server (`npm test` builds first), run under a pseudo-terminal by util-linux's `script`, or with piped stdout.

/** Every process under `pid` (children first found through pgrep), deepest last. */
function descendants (pid: number): number[] {
  const children = spawnSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean).map(Number)
  return children.flatMap((child) => [child, ...descendants(child)])
}

async function runServer (t: Teardown, tty: boolean): Promise<{ port: number, output: () => string }> {
  const port = await freePort()
  const env = { ...process.env, PORT: String(port), HOST: '127.0.0.1', DATABASE_URL: TEST_DATABASE_URL, ROLE: 'api', LOG_LEVEL: 'info', NO_COLOR: '1', EMBEDDED_MONGO_PATH: '' }
  const command = `${JSON.stringify(process.execPath)} dist/src/server.js`
  const child = tty
    ? spawn('script', ['-qfec', command, '/dev/null'], { env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn(process.execPath, ['dist/src/server.js'], { env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (d) => { output += d })
  child.stderr.on('data', (d) => { output += d })
  t.teardown(async () => {
    if (child.exitCode !== null) return
    // `script` runs the server in a session of its own (on the pseudo-terminal), outside this process group: the
    // server is killed by pid, or it outlives the test on a closed terminal (seen spinning on SIGSEGV at 90 % CPU).
    for (const pid of descendants(child.pid!)) process.kill(pid, 'SIGKILL')
    process.kill(-child.pid!, 'SIGKILL')
    await new Promise((resolve) => child.once('exit', resolve))
  })
  await eventually(async () => output.includes('Server listening'), 30_000, 100)
  return { port, output: () => output }
}

const secret = developmentSecrets.ADMIN_TOKEN

for (const tty of [true, false]) {
  t.test(tty ? 'in a terminal the logs are pretty and still redact secrets' : 'piped, the logs are JSON lines and redact secrets', async (t) => {
    const server = await runServer(t, tty)
    const res = await fetch(`http://127.0.0.1:${server.port}/v1/users/nobody?echo=${secret}`, { headers: { authorization: `Bearer ${secret}` } })
    t.equal(res.status, 404)
    await eventually(async () => server.output().includes('request rejected'), 10_000, 50)
    const output = server.output()
    t.notOk(output.includes(secret), 'the admin token appears nowhere')
    t.match(output, /"authorization": ?"\[redacted\]"/, 'the header is redacted')
    t.match(output, /echo=\[redacted\]/, 'the secret in the URL is scrubbed')
    const lines = output.split(/\r?\n/).filter((l) => l.includes('incoming request'))
    t.ok(lines.length > 0)
    if (tty) {
      t.match(lines[0], /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: incoming request/, 'a readable line')
    } else {
      t.equal(JSON.parse(lines[0]).msg, 'incoming request', 'a JSON line')
    }
  })
}
