import type { MarqetaClient } from './client.js'
import { MarqetaApiError } from './errors.js'
import { all } from './pagination.js'
import { webhookName, type SetupTarget } from './setup.js'
import type { MarqetaWebhook, ProgramGatewayFundingSource } from './types.js'

export interface MarqetaStatus {
  fundingSource: (Omit<ProgramGatewayFundingSource, 'basic_auth_password'> & { password_matches?: boolean }) | undefined
  webhooks: Array<MarqetaWebhook & { ours: boolean, credentials_match?: boolean }>
}

/**
 * What Marqeta has registered for us: our program gateway funding source and every webhook (ours marked). The
 * funding source's password is compared with the local one, never returned.
 */
export async function marqetaStatus (client: MarqetaClient, target: SetupTarget): Promise<MarqetaStatus> {
  let fundingSource: MarqetaStatus['fundingSource']
  try {
    const { basic_auth_password: password, ...rest } = await client.getProgramGatewayFundingSource(target.fundingSource.token)
    fundingSource = { ...rest, password_matches: password === target.fundingSource.password }
  } catch (err) {
    if (!(err instanceof MarqetaApiError && err.statusCode === 404)) throw err
  }
  const webhooks = (await all(client.listWebhooks())).map((w) => {
    const ours = w.token === target.webhook.token
    return { ...w, ours, ...(ours ? { credentials_match: w.name === webhookName(target.webhook) } : {}) }
  })
  return { fundingSource, webhooks }
}
