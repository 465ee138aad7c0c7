import { createHash, timingSafeEqual } from 'node:crypto'

/** Constant-time string comparison: hashing first gives equal lengths, so the length of a secret does not leak. */
export function safeEqual (given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest()
  const b = createHash('sha256').update(expected).digest()
  return timingSafeEqual(a, b)
}

/** Parses `Basic base64(user:password)`; undefined when the header is absent or malformed. */
export function parseBasicAuth (header: string | undefined): { user: string, password: string } | undefined {
  if (header === undefined) return undefined
  const match = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header)
  if (match === null) return undefined
  const decoded = Buffer.from(match[1], 'base64').toString('utf8')
  const colon = decoded.indexOf(':')
  if (colon < 0) return undefined
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) }
}

export function checkBasicAuth (header: string | undefined, user: string, password: string): boolean {
  const given = parseBasicAuth(header)
  // Both comparisons always run, so a wrong user costs as long as a wrong password.
  const userOk = safeEqual(given?.user ?? '', user)
  const passwordOk = safeEqual(given?.password ?? '', password)
  return given !== undefined && userOk && passwordOk
}

export function checkBearer (header: string | undefined, token: string): boolean {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '')
  return safeEqual(match?.[1] ?? '', token) && match !== null
}
