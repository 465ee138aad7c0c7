import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify'
import { adminHeaders } from '../../helper.js'

/** How many under-pressure 503s adminCall retried in this process (the tests print it). */
export let underPressureRetries = 0

/**
 * app.inject for admin routes, with the admin bearer token unless headers say otherwise. A 503 with Retry-After comes
 * from @fastify/under-pressure (the shared 2-core test machine is at times saturated by parallel suites); it is
 * refused in onRequest, before any handler ran, so it is retried; every other answer is returned as is.
 */
export async function adminCall (app: FastifyInstance, method: InjectOptions['method'], url: string, payload?: unknown,
  headers: Record<string, string> = adminHeaders): Promise<LightMyRequestResponse> {
  for (let attempt = 1; ; attempt++) {
    const res = await app.inject({ method, url, payload: payload as InjectOptions['payload'], headers })
    if (res.statusCode !== 503 || res.headers['retry-after'] === undefined || attempt >= 20) return res
    underPressureRetries++
    await new Promise((resolve) => setTimeout(resolve, 250 * attempt))
  }
}
