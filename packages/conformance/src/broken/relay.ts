/**
 * A memory hub behind a TCP hop: the cheapest honest TCP broker, so that the suite's TCP paths (the fault proxy,
 * `chaos.upstream`, round trips) can be judged without a real broker server. The relay is an echo server; the
 * driver makes a round trip through it, carrying the bytes, before every operation on the hub (a batch sent, a
 * delivery handed to core, an ack, a release, a dead letter), so a cut, a stall or a refused connection between
 * them acts on the broker as it would on a real one: when its socket closes, the driver's hub connection is cut
 * (deliveries in flight go back to their groups) and core is told the connection is lost.
 */
import { type AddressInfo, createServer, type Socket, connect as tcpConnect } from 'node:net';
import {
  type BrokerDriver,
  ConnectionError,
  type ConsumerSink,
  type Delivery,
  type MemoryHub,
  memoryDriver,
  type OutgoingMessage,
  type SendOutcome,
} from '@parley/core';

const SCOPE = 'relay';

/** The relay: an echo server on 127.0.0.1. */
export interface Relay {
  readonly host: string;
  readonly port: number;
  close(): Promise<void>;
}

/** Starts an echo server on an ephemeral port of 127.0.0.1. */
export async function startRelay(): Promise<Relay> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.setNoDelay(true);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
    socket.pipe(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    host: '127.0.0.1',
    port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

export interface RelayDriverOptions {
  readonly hub: MemoryHub;
  readonly destination: string;
  /** Where to connect: the relay, or a fault proxy in front of it. */
  readonly address: { readonly host: string; readonly port: number };
  /**
   * One round trip per message of a batch, each awaited before the next: what a driver that declares
   * `batchPublish` but sends message by message does. Default false: one round trip per batch.
   */
  readonly roundTripPerMessage?: boolean;
}

/** One connection to the relay: round trips are matched to the echo by byte counts (the echo keeps their order). */
class Link {
  readonly #socket: Socket;
  readonly #pending: { remaining: number; resolve: () => void; reject: (error: Error) => void }[] = [];
  #closed = false;

  constructor(socket: Socket, onClose: () => void) {
    this.#socket = socket;
    socket.on('data', (chunk: Buffer) => {
      let left = chunk.length;
      while (left > 0 && this.#pending.length > 0) {
        const head = this.#pending[0]!;
        const taken = Math.min(left, head.remaining);
        head.remaining -= taken;
        left -= taken;
        if (head.remaining === 0) {
          this.#pending.shift();
          head.resolve();
        }
      }
    });
    socket.on('close', () => {
      this.#closed = true;
      const error = new ConnectionError(SCOPE, 'connection to the relay lost');
      for (const waiting of this.#pending.splice(0)) waiting.reject(error);
      onClose();
    });
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Sends `bytes` (at least one) and resolves once they came back. */
  roundTrip(bytes: Uint8Array): Promise<void> {
    if (this.#closed) return Promise.reject(new ConnectionError(SCOPE, 'not connected to the relay'));
    const data = bytes.byteLength > 0 ? bytes : Buffer.from('\n');
    return new Promise((resolve, reject) => {
      this.#pending.push({ remaining: data.byteLength, resolve, reject });
      this.#socket.write(data);
    });
  }

  close(): void {
    this.#socket.destroy();
  }
}

const PING = Buffer.from('ping\n');

/** Opens a link; it counts as connected once a first round trip made it through (a refusing proxy accepts, then resets). */
async function openLink(address: RelayDriverOptions['address'], onClose: () => void): Promise<Link> {
  const socket = tcpConnect({ host: address.host, port: address.port });
  socket.setNoDelay(true);
  socket.on('error', () => {}); // 'close' follows, and does the cleanup
  let closed = false;
  const link = new Link(socket, () => {
    closed = true;
    onClose();
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('close', () =>
      reject(new ConnectionError(SCOPE, `cannot reach ${address.host}:${address.port}`)),
    );
  });
  await link.roundTrip(PING);
  if (closed) throw new ConnectionError(SCOPE, 'the relay closed the connection');
  return link;
}

/**
 * The memory broker's driver with every operation behind a round trip through `address`. Its capabilities are the
 * memory driver's; it has no `faults`: break the network instead (a fault proxy).
 */
export function relayDriver(options: RelayDriverOptions): BrokerDriver<MemoryHub> {
  const inner = memoryDriver({ hub: options.hub, destination: options.destination });
  const faults = inner.faults!;
  let link: Link | undefined;
  let closed = false;
  const retryable = (batch: readonly OutgoingMessage[], error: Error): SendOutcome[] =>
    batch.map(() => ({ ok: false, error, retryable: true }));
  const through = (bytes: Uint8Array): Promise<void> =>
    link ? link.roundTrip(bytes) : Promise.reject(new ConnectionError(SCOPE, 'not connected to the relay'));

  /** A delivery whose settling goes over the network first. */
  const relayed = (delivery: Delivery): Delivery => ({
    ...delivery,
    ack: async () => {
      await through(Buffer.from(`ack ${delivery.id}\n`));
      await delivery.ack();
    },
    release: async (releaseOptions) => {
      await through(Buffer.from(`release ${delivery.id}\n`));
      await delivery.release(releaseOptions);
    },
  });

  return {
    ...inner,
    name: SCOPE,
    faults: undefined,
    async connect(session) {
      if (closed) throw new ConnectionError(SCOPE, 'closed');
      let opened: Link | undefined;
      opened = await openLink(options.address, () => {
        // A link that never got to count (it dropped while connecting) has nothing to cut.
        if (opened === undefined || link !== opened) return;
        link = undefined;
        // The connection dropped: what the hub lent this client goes back, and core hears that it is lost.
        void faults.cut();
      });
      // The hub side first (it was cut with the last connection), then the link counts: a link that drops
      // meanwhile fails this attempt, and core tries again.
      await faults.restore();
      await inner.connect(session);
      if (opened.closed) throw new ConnectionError(SCOPE, 'the relay closed the connection');
      link = opened;
    },
    async send(batch) {
      if (!link) return retryable(batch, new ConnectionError(SCOPE, 'not connected to the relay'));
      if (!options.roundTripPerMessage) {
        try {
          await through(Buffer.concat(batch.map((message) => message.body)));
        } catch (error) {
          return retryable(batch, error as Error);
        }
        return inner.send(batch);
      }
      const outcomes: SendOutcome[] = [];
      for (const [i, message] of batch.entries()) {
        try {
          await through(message.body);
        } catch (error) {
          return [...outcomes, ...retryable(batch.slice(i), error as Error)];
        }
        outcomes.push(...(await inner.send([message])));
      }
      return outcomes;
    },
    async consume(consumeOptions, sink) {
      if (!link) throw new ConnectionError(SCOPE, 'not connected to the relay');
      const relayedSink: ConsumerSink = {
        deliver: (delivery) => {
          // Handed to core once its bytes crossed the network; a delivery lost on the way goes back with the cut.
          through(delivery.body).then(
            () => sink.deliver(relayed(delivery)),
            () => undefined,
          );
        },
        lost: (error) => sink.lost(error),
      };
      return inner.consume(consumeOptions, relayedSink);
    },
    async deadLetter(deadLetter) {
      await through(deadLetter.body);
      await inner.deadLetter!(deadLetter);
    },
    isReady: () => link !== undefined && inner.isReady(),
    async close() {
      closed = true;
      const open = link;
      link = undefined;
      open?.close();
      await inner.close();
    },
  };
}
