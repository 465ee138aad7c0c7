/**
 * What can go wrong calling Marqeta. Messages name the call (method and path) and Marqeta's own `error_code` and
 * `error_message`; never a header, a credential or a request body.
 * @see https://www.marqeta.com/docs/core-api/errors (the code's first three digits are the HTTP status)
 */
export class MarqetaError extends Error {
  /** Whether trying again may succeed (429, 5xx, a network error or a timeout). */
  readonly retryable: boolean = false
}

/** Marqeta answered with a non-2xx status. */
export class MarqetaApiError extends MarqetaError {
  override readonly name = 'MarqetaApiError'
  override readonly retryable: boolean

  constructor (
    readonly method: string,
    readonly path: string,
    readonly statusCode: number,
    readonly errorCode: string | undefined,
    readonly errorMessage: string | undefined,
    /** Milliseconds asked for by a Retry-After header, if any. */
    readonly retryAfterMs?: number
  ) {
    super(`Marqeta ${method} ${path} answered ${statusCode}` +
      (errorCode !== undefined ? ` error_code ${errorCode}` : '') +
      (errorMessage !== undefined ? `: ${errorMessage}` : ''))
    this.retryable = statusCode === 429 || statusCode >= 500
  }
}

/** No answer within MARQETA_TIMEOUT_MS. */
export class MarqetaTimeoutError extends MarqetaError {
  override readonly name = 'MarqetaTimeoutError'
  override readonly retryable = true
  constructor (readonly method: string, readonly path: string, readonly timeoutMs: number) {
    super(`Marqeta ${method} ${path} did not answer within ${timeoutMs} ms`)
  }
}

/** The connection failed (refused, reset, DNS, TLS). */
export class MarqetaNetworkError extends MarqetaError {
  override readonly name = 'MarqetaNetworkError'
  override readonly retryable = true
  constructor (readonly method: string, readonly path: string, readonly causeCode: string | undefined, causeMessage: string) {
    super(`Marqeta ${method} ${path} failed: ${causeCode ?? causeMessage}`)
  }
}

/** Marqeta's error body: `{"error_code": "...", "error_message": "..."}`; anything else yields undefineds. */
export function parseErrorBody (text: string): { errorCode?: string, errorMessage?: string } {
  try {
    const body = JSON.parse(text) as Record<string, unknown>
    const code = body?.error_code
    const message = body?.error_message
    return {
      ...(typeof code === 'string' || typeof code === 'number' ? { errorCode: String(code) } : {}),
      ...(typeof message === 'string' ? { errorMessage: message.slice(0, 500) } : {})
    }
  } catch {
    return {}
  }
}

/** Retry-After in seconds or as an HTTP date, in milliseconds; undefined when absent or unreadable. */
export function retryAfterMs (header: string | string[] | undefined, now = Date.now()): number | undefined {
  const value = Array.isArray(header) ? header[0] : header
  if (value === undefined || value.trim() === '') return undefined
  if (/^\d+(\.\d+)?$/.test(value.trim())) return Math.round(Number(value) * 1000)
  const at = Date.parse(value)
  return Number.isNaN(at) ? undefined : Math.max(0, at - now)
}
