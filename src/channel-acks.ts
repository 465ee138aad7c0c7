import type { Channel, Message } from 'amqplib'

interface Delivery {
  msg: Message
  /** Settled by an ack (true), by a nack (false: the broker no longer holds it), or not yet (undefined). */
  acked?: boolean
}

/**
 * One ack for many (DESIGN §7): a consumer channel's deliveries are settled in any order, and once per turn of the
 * event loop the run of settled deliveries at the head of the channel's delivery order is acked with a single
 * `multiple` ack naming the last acked one. Deliveries settled behind one still being handled are acked one by one in
 * the same turn: held back, they would keep the channel's prefetch window full for as long as a slow handler runs.
 * Every delivery must be settled (acked or requeued), or its channel closed: an unsettled one would hold back the
 * multiple acks of all later ones. A channel lost before an ack returns its unacked deliveries to the queue, as it
 * always does (the handlers are idempotent).
 */
export class ChannelAcks {
  private deliveries: Delivery[] = []
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
    try {
      this.channel.nack(msg, false, true)
    } catch {
      // The channel is gone: the message returns to the queue by itself.
    }
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

  /** Acks what is settled now (also run once per turn of the event loop after a settlement). */
  flush (): void {
    let last: Message | undefined
    let head = 0
    while (head < this.deliveries.length && this.deliveries[head].acked !== undefined) {
      const delivery = this.deliveries[head++]
      this.byTag.delete(delivery.msg.fields.deliveryTag)
      if (delivery.acked) last = delivery.msg
    }
    const alone: Message[] = []
    this.deliveries = this.deliveries.slice(head).filter((delivery) => {
      if (delivery.acked === undefined) return true
      this.byTag.delete(delivery.msg.fields.deliveryTag)
      if (delivery.acked) alone.push(delivery.msg)
      return false
    })
    try {
      // The broker refuses a `multiple` ack whose own tag it no longer holds: it names the last acked delivery of the
      // head, never a requeued one (requeued deliveries are not held any more, so the ack does not touch them).
      if (last !== undefined) this.channel.ack(last, true)
      for (const msg of alone) this.channel.ack(msg)
    } catch {
      // The channel is gone: its unacked deliveries return to the queue by themselves.
    }
  }
}
