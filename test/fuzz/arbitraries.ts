import fc from 'fast-check'
import { uniq } from '../helper.js'

/** One generated HTTP request, as app.inject takes it. */
export interface HostileRequest {
  route: string
  method: string
  url: string
  headers: Record<string, string>
  payload?: string | Buffer
  /** The request must be refused (a 4xx other than the JIT 402): it targets a funded user with something invalid. */
  mustReject: boolean
}

/** Strings that have broken parsers, databases and loggers before. */
const nastyStrings = [
  '', ' ', '\u0000', 'a\u0000b', '\u202Eevil\u202C', '\u200F\u05D0', '😀'.repeat(12), '\uD800', '\uDFFF', 'x\uDBFFy',
  '\uFEFF', 'x'.repeat(5000), '../../etc/passwd', '%00', "'; DROP TABLE users; --", '\r\n', '\t', '__proto__',
  'constructor', 'NaN', 'Infinity', '-Infinity', '-1', '1e308', '1e-400', '0x10', '12.345', '١٢٣', 'null', '{}', '[]',
  '\\', '"', '\u0085', '\u2028', 'A'.repeat(37), 'a'.repeat(36), 'Ä', 'e\u0301'
]

export const hostileString: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...nastyStrings) },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 20 }) },
  // Surrogate halves and controls, which JSON.stringify writes as \uXXXX escapes.
  { weight: 1, arbitrary: fc.array(fc.integer({ min: 0, max: 0xFFFF }), { maxLength: 8 }).map((units) => String.fromCharCode(...units)) }
)

/** A JSON value of any type, including ones no field accepts. */
export const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: hostileString },
  { weight: 1, arbitrary: fc.integer() },
  { weight: 1, arbitrary: fc.constantFrom(0, -0, -1, 2 ** 53 + 1, Number.MAX_VALUE, 1e-300, 0.1 + 0.2) },
  { weight: 1, arbitrary: fc.boolean() },
  { weight: 1, arbitrary: fc.constant(null) },
  { weight: 1, arbitrary: fc.constantFrom({}, [], [[]], { a: {} }, [1, 'x', null]) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) }
)

type Path = string[]

function pathsOf (value: unknown, prefix: Path = []): Path[] {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return []
  return Object.entries(value).flatMap(([k, v]) => [[...prefix, k], ...pathsOf(v, [...prefix, k])])
}

function setAt (root: any, path: Path, value: unknown): void {
  let node = root
  for (const key of path.slice(0, -1)) {
    if (node[key] === null || typeof node[key] !== 'object') node[key] = {}
    node = node[key]
  }
  node[path[path.length - 1]] = value
}

function deleteAt (root: any, path: Path): void {
  let node = root
  for (const key of path.slice(0, -1)) {
    node = node?.[key]
    if (node === null || typeof node !== 'object') return
  }
  delete node[path[path.length - 1]]
}

type Mutation = { kind: 'set', pick: number, value: unknown } | { kind: 'delete', pick: number } |
{ kind: 'extra', key: string, value: unknown } | { kind: 'replace', value: unknown }

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('set' as const), pick: fc.nat(), value: hostileValue }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('delete' as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('extra' as const), key: hostileString, value: hostileValue }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('replace' as const), value: hostileValue }) }
)

function applyMutation (body: unknown, m: Mutation): unknown {
  // Generated values may be shared constants: each request gets its own copy.
  if (m.kind === 'replace') return structuredClone(m.value)
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return body
  if (m.kind === 'extra') {
    // An own property even for "__proto__", so that the JSON text carries it.
    Object.defineProperty(body, m.key, { value: structuredClone(m.value), enumerable: true, writable: true, configurable: true })
    return body
  }
  const paths = pathsOf(body)
  if (paths.length === 0) return body
  const path = paths[m.pick % paths.length]
  if (m.kind === 'set') setAt(body, path, structuredClone(m.value))
  else deleteAt(body, path)
  return body
}

/** Missing, extra and wrongly typed fields: 1 to 3 mutations of a valid body. */
export const mutationsOf = (base: () => unknown): fc.Arbitrary<() => unknown> =>
  fc.array(mutation, { minLength: 1, maxLength: 3 }).map((ms) => () => ms.reduce((body, m) => applyMutation(body, m), base()))

/** What happens to the JSON text on the way: encodings, duplicate keys, huge and deep documents, broken syntax. */
export type Encoding = 'plain' | 'bom' | 'invalid-utf8' | 'latin1' | 'duplicate-key' | 'proto' | 'truncated' | 'trailing-garbage' |
'deep' | 'huge-array' | 'huge-number' | 'utf16' | 'oversize'

export const encoding: fc.Arbitrary<Encoding> = fc.oneof(
  { weight: 6, arbitrary: fc.constant('plain' as const) },
  { weight: 4, arbitrary: fc.constantFrom<Encoding>('bom', 'invalid-utf8', 'latin1', 'duplicate-key', 'proto', 'truncated', 'trailing-garbage', 'deep', 'huge-array', 'huge-number', 'utf16', 'oversize') }
)

export function encode (body: unknown, how: Encoding, depth: number): string | Buffer {
  const text = JSON.stringify(body) ?? 'null'
  switch (how) {
    case 'plain': return text
    case 'bom': return '\uFEFF' + text
    case 'invalid-utf8': {
      const bytes = Buffer.from(text)
      const at = Math.max(0, bytes.indexOf(0x22, 2) + 1) // inside the first string, if any
      return Buffer.concat([bytes.subarray(0, at), Buffer.from([0xC3, 0x28, 0xFF, 0xFE, 0xED, 0xA0, 0x80]), bytes.subarray(at)])
    }
    case 'latin1': return Buffer.from(text.replace(/"$|}$/, (end) => `${text.startsWith('{') && text !== '{}' ? ',' : ''}"nom":"Ã©tÃ©"${end}`), 'latin1')
    // The body's own keys come later and win, as JSON.parse keeps the last of duplicate keys.
    case 'duplicate-key': return text.startsWith('{') && text !== '{}' ? text.replace('{', '{"token":{"dup":true},"amount":[],"status":0,') : text
    case 'proto': return text.startsWith('{') && text !== '{}' ? text.replace('{', '{"__proto__":{"polluted":1},"constructor":{"prototype":{"polluted":1}},') : text
    case 'truncated': return text.slice(0, Math.max(1, Math.floor(text.length / 2)))
    case 'trailing-garbage': return text + '\u0000}{"x":1}'
    case 'deep': return text.startsWith('{') && text !== '{}' ? text.replace('{', `{"nested":${'['.repeat(depth)}0${']'.repeat(depth)},`) : '['.repeat(depth) + ']'.repeat(depth)
    case 'huge-array': return text.startsWith('{') && text !== '{}' ? text.replace('{', `{"transactions":[${Array(20_000).fill('{}').join(',')}],`) : `[${Array(20_000).fill('1').join(',')}]`
    case 'huge-number': return text.replace(/(-?\d+(\.\d+)?)/, '1e400').replace(/^("[^"]*")$/, '-1e400')
    case 'utf16': return Buffer.from(text, 'utf16le')
    // Over the 256 KB body limit, yet valid JSON (trailing whitespace).
    case 'oversize': return text + ' '.repeat(300 * 1024)
  }
}

export const contentType: fc.Arbitrary<string | undefined> = fc.oneof(
  { weight: 6, arbitrary: fc.constant('application/json') },
  {
    weight: 3,
    arbitrary: fc.constantFrom<string | undefined>(
      undefined, '', 'application/json; charset=utf-8', 'application/json; charset=utf-16', 'application/json; charset=latin1',
      'application/json; charset="bogus"', 'application/JSON', 'application/json;;;', 'text/plain', 'text/json',
      'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/vnd.marqeta+json', '*/*',
      'application/json, text/plain', 'application/\u00e9json')
  }
)

/** A path segment: a hostile string, percent-encoded even when it has lone surrogates, or raw broken escapes. */
export const pathSegment: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: hostileString.filter((s) => s.length > 0).map(encodeSegment) },
  { weight: 1, arbitrary: fc.constantFrom('%00', 'a%00b', '%zz', '%', '%E0%A4%A', '%C0%AE', '%2F', '%2e%2e', '..', '%F0%9F%98%80', '%ED%A0%80', '%FF%FE', 'a%20b', 'x'.repeat(300), '%25') }
)

export function encodeSegment (s: string): string {
  return Array.from(s).map((ch) => {
    const unit = ch.charCodeAt(0)
    if (ch.length === 1 && unit >= 0xD800 && unit <= 0xDFFF) {
      // A lone surrogate has no UTF-8 form: send the bytes a careless encoder (CESU-8) would.
      return [0xE0 | (unit >> 12), 0x80 | ((unit >> 6) & 0x3F), 0x80 | (unit & 0x3F)].map((b) => '%' + b.toString(16).toUpperCase()).join('')
    }
    return encodeURIComponent(ch)
  }).join('')
}

/** A query string of random keys and values, sometimes repeating a key (an array after parsing). */
export const queryString = (keys: string[]): fc.Arbitrary<string> => fc.array(
  fc.tuple(fc.oneof(fc.constantFrom('x', ...keys), hostileString.map(encodeSegment)), fc.oneof(hostileString.map(encodeSegment), pathSegment)),
  { maxLength: 4 }
).map((pairs) => pairs.length === 0 ? '' : '?' + pairs.map(([k, v]) => `${k}=${v}`).join('&'))

export type AuthKind = 'valid' | 'missing' | 'wrong-scheme' | 'wrong-secret' | 'huge' | 'garbage'

export const authKind: fc.Arbitrary<AuthKind> = fc.oneof(
  { weight: 5, arbitrary: fc.constant('valid' as const) },
  { weight: 3, arbitrary: fc.constantFrom<AuthKind>('missing', 'wrong-scheme', 'wrong-secret', 'huge', 'garbage') }
)

const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`

/** An Authorization header of the given kind, for a route that expects `valid`. */
export function authorization (kind: AuthKind, valid: string): string | undefined {
  switch (kind) {
    case 'valid': return valid
    case 'missing': return undefined
    case 'wrong-scheme': return valid.startsWith('Bearer ') ? `Basic ${valid.slice(7)}` : `Bearer ${valid.slice(6)}`
    case 'wrong-secret': return valid.startsWith('Bearer ') ? `${valid}x` : basic('marqeta-jit', 'not-the-password-at-all')
    case 'huge': return `${valid.split(' ')[0]} ${'A'.repeat(12_000)}`
    case 'garbage': return valid.startsWith('Bearer ') ? 'Bearer' : 'Basic Og==:::\u00ff'
  }
}

/** A token that exists nowhere. */
export const absentToken = (): string => uniq('fz-none')
