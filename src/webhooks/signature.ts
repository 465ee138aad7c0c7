import { createHmac } from 'node:crypto'
import { safeEqual } from '../credentials.js'

export type SignatureAlgorithm = 'sha256' | 'sha1'

/** Lowercase hex HMAC of the raw body, as Marqeta sends it in `X-Marqeta-Signature` (DESIGN §5). */
export function signBody (body: Buffer | string, secret: string, algorithm: SignatureAlgorithm = 'sha256'): string {
  return createHmac(algorithm, secret).update(body).digest('hex')
}

/** Constant-time check of a signature header against the raw bytes; a missing or repeated header fails. */
export function verifySignature (body: Buffer, header: string | string[] | undefined, secret: string, algorithm: SignatureAlgorithm): boolean {
  if (typeof header !== 'string') return false
  return safeEqual(header.trim(), signBody(body, secret, algorithm))
}
