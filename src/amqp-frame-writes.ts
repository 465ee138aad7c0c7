import type { Writable } from 'node:stream'
import type { ChannelModel } from 'amqplib'

interface Multiplexer { out?: Writable, _readIncoming?: () => void }

/**
 * amqplib's multiplexer writes every frame to the socket with a write call of its own, so a page of publishes or a
 * run of acks costs one syscall per frame, each waking the broker. Corked for each pass of the multiplexer, the
 * socket sends what the pass found in one writev. This reaches into amqplib 2.x (Connection.muxer, Mux.out,
 * Mux._readIncoming): when they are not there, nothing changes and the caller is told.
 */
export function coalesceFrameWrites (model: ChannelModel): boolean {
  const mux = (model as unknown as { connection?: { muxer?: Multiplexer } }).connection?.muxer
  const out = mux?.out
  if (mux === undefined || out === undefined || typeof mux._readIncoming !== 'function' || typeof out.cork !== 'function') return false
  const readIncoming = mux._readIncoming.bind(mux)
  mux._readIncoming = () => {
    out.cork()
    try {
      readIncoming()
    } finally {
      out.uncork()
    }
  }
  return true
}
