import { setTimeout as sleep } from 'node:timers/promises'
import pRetry from 'p-retry'
import { Pool } from 'undici'
import { MarqetaApiError, MarqetaError, MarqetaNetworkError, MarqetaTimeoutError, parseErrorBody, retryAfterMs } from './errors.js'

export interface MarqetaHttpOptions {
  baseUrl: string
  applicationToken: string
  adminAccessToken: string
  timeoutMs: number
  retries: number
  retryMinMs: number
  retryMaxMs: number
  /** The longest Retry-After honoured; a longer one waits this long. */
  maxRetryAfterMs?: number
  onRetry?: (retry: { method: string, path: string, attempt: number, reason: string }) => void
}

export type Query = Record<string, string | number | boolean | undefined>

export interface CallOptions {
  query?: Query
  body?: unknown
  /**
   * Whether repeating the call cannot do anything twice. GET and PUT are; a POST is when it carries our own token
   * (Marqeta answers the repeat with a 409). A non-idempotent call is retried only on 429, where Marqeta did nothing.
   */
  idempotent?: boolean
}

type Method = 'GET' | 'POST' | 'PUT'

/**
 * HTTP to Marqeta's Core API: one keep-alive pool, Basic auth (application token : admin access token), a timeout per
 * attempt, and retries with exponential backoff on 429 (honouring Retry-After), 5xx, network errors and timeouts only.
 * @see https://www.marqeta.com/docs/developer-guides/core-api-quick-start (Basic auth with the two tokens)
 */
export class MarqetaHttp {
  private readonly pool: Pool
  private readonly basePath: string
  // ES private fields: util.inspect and JSON.stringify of the client never show the credentials.
  readonly #authorization: string
  readonly #opts: Omit<MarqetaHttpOptions, 'applicationToken' | 'adminAccessToken'>

  constructor ({ applicationToken, adminAccessToken, ...opts }: MarqetaHttpOptions) {
    const url = new URL(opts.baseUrl)
    this.pool = new Pool(url.origin, { connections: 4, headersTimeout: opts.timeoutMs, bodyTimeout: opts.timeoutMs })
    this.basePath = url.pathname.replace(/\/+$/, '')
    this.#authorization = `Basic ${Buffer.from(`${applicationToken}:${adminAccessToken}`).toString('base64')}`
    this.#opts = opts
  }

  async request<T> (method: Method, path: string, options: CallOptions = {}): Promise<T> {
    const idempotent = options.idempotent ?? method !== 'POST'
    const worthRetrying = (err: unknown): boolean =>
      err instanceof MarqetaError && err.retryable && (idempotent || (err instanceof MarqetaApiError && err.statusCode === 429))
    return await pRetry(async () => await this.once<T>(method, path, options), {
      retries: this.#opts.retries,
      minTimeout: this.#opts.retryMinMs,
      maxTimeout: this.#opts.retryMaxMs,
      factor: 2,
      randomize: true,
      shouldRetry: ({ error }) => worthRetrying(error),
      onFailedAttempt: async ({ error, attemptNumber, retriesLeft }) => {
        if (retriesLeft <= 0 || !worthRetrying(error)) return
        this.#opts.onRetry?.({ method, path, attempt: attemptNumber + 1, reason: error.message })
        // Marqeta's rate limiter says when to come back; the backoff that follows adds its own short delay.
        const wait = error instanceof MarqetaApiError ? error.retryAfterMs : undefined
        if (wait !== undefined && wait > 0) await sleep(Math.min(wait, this.#opts.maxRetryAfterMs ?? 60_000))
      }
    })
  }

  private async once<T> (method: Method, path: string, { query, body }: CallOptions): Promise<T> {
    const controller = new AbortController()
    const timer = setTimeout(() => controller.abort(), this.#opts.timeoutMs)
    try {
      const res = await this.pool.request({
        method,
        path: this.basePath + path + queryString(query),
        headers: {
          authorization: this.#authorization,
          accept: 'application/json',
          ...(body !== undefined ? { 'content-type': 'application/json' } : {})
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: controller.signal
      })
      const text = await res.body.text()
      if (res.statusCode >= 200 && res.statusCode < 300) {
        if (text === '') return undefined as T
        try {
          return JSON.parse(text) as T
        } catch {
          throw new MarqetaApiError(method, path, res.statusCode, undefined, 'the response body is not JSON')
        }
      }
      const { errorCode, errorMessage } = parseErrorBody(text)
      throw new MarqetaApiError(method, path, res.statusCode, errorCode, errorMessage, retryAfterMs(res.headers['retry-after']))
    } catch (err) {
      if (err instanceof MarqetaError) throw err
      if (controller.signal.aborted) throw new MarqetaTimeoutError(method, path, this.#opts.timeoutMs)
      const e = err as { code?: string, message?: string }
      if (e.code === 'UND_ERR_HEADERS_TIMEOUT' || e.code === 'UND_ERR_BODY_TIMEOUT') throw new MarqetaTimeoutError(method, path, this.#opts.timeoutMs)
      throw new MarqetaNetworkError(method, path, e.code, e.message ?? String(err))
    } finally {
      clearTimeout(timer)
    }
  }

  async close (): Promise<void> {
    await this.pool.close()
  }
}

function queryString (query: Query | undefined): string {
  if (query === undefined) return ''
  const params = new URLSearchParams()
  for (const [key, value] of Object.entries(query)) if (value !== undefined) params.set(key, String(value))
  const text = params.toString()
  return text === '' ? '' : `?${text}`
}
