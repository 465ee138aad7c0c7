/**
 * CongoDB (TOOLING.md): a wire-compatible MongoDB server written in TypeScript, started in this process when
 * MONGO_URL=embedded (development and tests). Only a dev dependency: a production image sets MONGO_URL and never
 * loads it. The URL carries the client options this server needs (one server, polled monitoring), so any process
 * given it connects the same way.
 */
export async function startEmbeddedMongo (): Promise<{ url: string, stop: () => Promise<void> }> {
  const { CongoServer } = await import('@push.rocks/smartmongo/dist_ts/congodb/index.js' as string)
  const server = new CongoServer({ host: '127.0.0.1', port: 0 })
  await server.start()
  const port: number = (server as any).server?.address()?.port ?? server.port
  return { url: `mongodb://127.0.0.1:${port}/?directConnection=true&serverMonitoringMode=poll`, stop: () => server.stop() }
}
