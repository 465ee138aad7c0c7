import type { Channel, Message } from 'amqplib'

interface Delivery {
  msg: Message
  /** Settled by an ack (true), by a nack (false: the broker no longer holds it), or not yet (undefined). */
  acked?: boolean
}

/**
 * One ack for many (DESIGN §7): a consumer channel's deliveries are settled in any order, and once per turn of the
 * event loop the run of settled deliveries at the head of the channel's delivery order is acked with a single
 * `multiple` ack naming the last acked one. A delivery still being handled holds back every later one; a channel lost
 * before the ack returns them all to the queue, as unacked deliveries always do (the handlers are idempotent).
 */
export class ChannelAcks {
  private readonly deliveries: Delivery[] = []
  private readonly byTag = new Map<number, Delivery>()
  private scheduled = false

  constructor (private readonly channel: Channel) {}

  /** Call for every delivery, in the order the channel hands them over. */
  delivered (msg: Message): void {
    const delivery: Delivery = { msg }
    this.deliveries.push(delivery)
    this.byTag.set(msg.fields.deliveryTag, delivery)
  }

  ack (msg: Message): void {
    this.settle(msg, true)
  }

  /** Returns the message to the queue at once; the deliveries around it are acked as usual. */
  requeue (msg: Message): void {
    this.channel.nack(msg, false, true)
    this.settle(msg, false)
  }

  private settle (msg: Message, acked: boolean): void {
    const delivery = this.byTag.get(msg.fields.deliveryTag)
    if (delivery === undefined) throw new Error(`delivery ${msg.fields.deliveryTag} was not registered`)
    delivery.acked = acked
    if (this.scheduled) return
    this.scheduled = true
    setImmediate(() => {
      this.scheduled = false
      this.flush()
    })
  }

  /** Acks the settled head now (also run once per turn of the event loop after a settlement). */
  flush (): void {
    let last: Message | undefined
    let settled = 0
    while (settled < this.deliveries.length && this.deliveries[settled].acked !== undefined) {
      const delivery = this.deliveries[settled++]
      this.byTag.delete(delivery.msg.fields.deliveryTag)
      if (delivery.acked) last = delivery.msg
    }
    this.deliveries.splice(0, settled)
    // The broker refuses a `multiple` ack whose own tag it no longer holds: it names the last acked delivery, never a
    // requeued one (those before it that were requeued are not held any more, so it does not touch them).
    if (last === undefined) return
    try {
      this.channel.ack(last, true)
    } catch {
      // The channel is gone: its unacked deliveries return to the queue by themselves.
    }
  }
}
