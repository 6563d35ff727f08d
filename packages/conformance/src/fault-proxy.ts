/**
 * An in-process, dependency-free TCP fault proxy for the chaos tier of the conformance suite.
 *
 * It sits between an adapter and a real broker (like Shopify's toxiproxy, but without a sidecar) and can
 * cut, stall or refuse connections on demand, so a test can check that nothing is lost while the network
 * misbehaves. Only `node:net` is used, because this file ships inside the published package.
 *
 * @packageDocumentation
 */
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';

/** Options for {@link startFaultProxy}. */
export interface FaultProxyOptions {
  /** Where to forward, e.g. { host: '127.0.0.1', port: 5672 }. */
  readonly upstream: { readonly host: string; readonly port: number };
  /** Listen address; default 127.0.0.1 and an ephemeral port (0). */
  readonly listen?: { readonly host?: string; readonly port?: number };
}

/**
 * What the proxy currently does with traffic:
 * - `open`: forwards normally;
 * - `cut`: every connection has been reset and new ones are reset on accept;
 * - `stall`: connections stay open but no byte moves, and new ones are held without reaching upstream;
 * - `refuse`: existing connections forward normally, new ones are reset on accept.
 */
export type FaultMode = 'open' | 'cut' | 'stall' | 'refuse';

/** A running proxy, returned by {@link startFaultProxy}. Every mode change replaces the previous one. */
export interface FaultProxy {
  /** The host the proxy listens on. */
  readonly host: string;
  /** The port the proxy listens on (the real one when an ephemeral port was asked for). */
  readonly port: number;
  /** `host:port`, handy for URLs. */
  readonly address: string;
  /** The current mode. */
  readonly mode: FaultMode;
  /**
   * Number of currently open client connections, and totals since start. `accepted` counts every TCP
   * connection the listener accepted (refused ones included); `cut` counts every connection the proxy reset
   * on purpose (those severed by {@link FaultProxy.cut} and those refused in `cut` or `refuse` mode).
   * `bytesUp` is client to upstream, `bytesDown` upstream to client, both counted as forwarded.
   * `upstream` counts connections that reached the upstream (refused and held ones do not): what a client that
   * really goes through the proxy must make. `turns` counts request/response turns: each time bytes go up after
   * bytes came down on a connection (a connection's first bytes up count as one), so a client that waits for a
   * reply to each message makes one turn per message, and one that sends a batch per round trip far fewer.
   */
  readonly stats: {
    readonly open: number;
    readonly accepted: number;
    readonly cut: number;
    readonly bytesUp: number;
    readonly bytesDown: number;
    readonly upstream: number;
    readonly turns: number;
  };
  /**
   * Destroys every open connection (both sides, with RST where possible) and refuses new ones (accept then
   * immediately reset) until {@link FaultProxy.restore}. Like a network partition the client notices.
   * Resolves once every socket has closed.
   */
  cut(): Promise<void>;
  /**
   * Keeps connections open but stops forwarding bytes in both directions, and holds new connections open
   * without connecting upstream, until {@link FaultProxy.restore}: like a black-holed network or a hung
   * broker. Nothing is dropped: reading is paused on both sides, so TCP backpressure keeps the bytes (the
   * proxy holds at most a socket buffer's worth per side), and on restore they flow again in order.
   */
  stall(): Promise<void>;
  /** Refuses new connections (accept + immediate reset) but leaves existing ones alone. */
  refuse(): Promise<void>;
  /** Back to normal forwarding; stalled connections resume and held ones are connected upstream. */
  restore(): Promise<void>;
  /** Cuts everything for `ms`, then restores (a convenience for tests). */
  outage(ms: number): Promise<void>;
  /** Stops listening and destroys all connections. Idempotent; mode changes afterwards do nothing. */
  close(): Promise<void>;
}

/** One direction of a link: bytes read from one socket that are waiting to be written to the other. */
interface Flow {
  /** Chunks read but not yet forwarded; `null` marks the end of the stream (a half-close to propagate). */
  readonly queue: Array<Buffer | null>;
  /** The destination's write buffer is full, so reading waits for its 'drain'. */
  blocked: boolean;
}

/** A client connection and, once connected (or while connecting), its upstream twin. */
interface Link {
  readonly client: Socket;
  upstream: Socket | null;
  /** Upstream has emitted 'connect'; until then nothing is forwarded. */
  connected: boolean;
  /** Client to upstream. */
  readonly up: Flow;
  /** Upstream to client. */
  readonly down: Flow;
  /** Which way bytes were last forwarded, for counting turns. */
  last: Direction | undefined;
}

type Direction = 'up' | 'down';

// Errors are expected here (ECONNRESET, EPIPE, ECONNREFUSED...): 'close' does the cleanup, and an
// unhandled 'error' event would take the whole test process down with it.
const ignore = (): void => {};

/** Resolves when `socket` has emitted 'close' (immediately if it already has). Never rejects. */
function closed(socket: Socket): Promise<void> {
  if (socket.closed) return Promise.resolve();
  return new Promise((resolve) => socket.once('close', () => resolve()));
}

/**
 * Destroys `socket` with a TCP RST where possible, so the peer sees ECONNRESET instead of a tidy EOF, as it
 * would on a real network failure. Falls back to a plain destroy when `resetAndDestroy()` would misbehave:
 * on a connecting socket it waits for a 'connect' that may never come; after `end()`, while libuv's shutdown
 * is pending, the reset fails with EINVAL and Node then never emits 'close' (the handle leaks and anything
 * awaiting it hangs); and Node < 16.17 lacks it.
 */
function reset(socket: Socket): void {
  if (socket.destroyed) return;
  if (socket.connecting || socket.writableEnded || typeof socket.resetAndDestroy !== 'function') {
    socket.destroy();
    return;
  }
  try {
    socket.resetAndDestroy();
  } catch {
    socket.destroy();
  }
}

/** Starts a proxy; resolves once it is listening. Rejects if the listen address cannot be bound. */
export async function startFaultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  const { upstream } = options;
  const host = options.listen?.host ?? '127.0.0.1';
  const links = new Set<Link>();
  const stats = { open: 0, accepted: 0, cut: 0, bytesUp: 0, bytesDown: 0, upstream: 0, turns: 0 };
  let mode: FaultMode = 'open';
  let closing: Promise<void> | undefined;

  // Bytes only move in these modes, and only once the upstream side has connected.
  const canForward = (link: Link): boolean => (mode === 'open' || mode === 'refuse') && link.connected;

  const write = (link: Link, direction: Direction, chunk: Buffer | null): void => {
    const destination = direction === 'up' ? link.upstream : link.client;
    if (destination === null || destination.destroyed) return;
    if (chunk === null) {
      destination.end(); // propagate the half-close; the other direction keeps flowing
      return;
    }
    if (direction === 'up') {
      stats.bytesUp += chunk.length;
      if (link.last !== 'up') stats.turns += 1;
    } else stats.bytesDown += chunk.length;
    link.last = direction;
    const flow = link[direction];
    if (!destination.write(chunk) && !flow.blocked) {
      // Manual backpressure instead of pipe(): pipe() resumes its source on 'drain' on its own, which would
      // silently undo a stall.
      flow.blocked = true;
      destination.once('drain', () => {
        flow.blocked = false;
        sync(link);
      });
    }
  };

  /** Brings a link in line with the current mode: flushes what was held back, then pauses or resumes. */
  const sync = (link: Link): void => {
    const forwarding = canForward(link);
    if (forwarding) {
      for (const direction of ['up', 'down'] as const) {
        const { queue } = link[direction];
        for (let chunk = queue.shift(); chunk !== undefined; chunk = queue.shift())
          write(link, direction, chunk);
      }
    }
    const reading = (socket: Socket | null, on: boolean): void => {
      if (socket === null || socket.destroyed) return;
      if (on) socket.resume();
      else socket.pause();
    };
    reading(link.client, forwarding && !link.up.blocked);
    reading(link.upstream, forwarding && !link.down.blocked);
  };

  /** A chunk (or end, as `null`) read from one side. Normally forwarded at once, queued if it must wait. */
  const received = (link: Link, direction: Direction, chunk: Buffer | null): void => {
    const flow = link[direction];
    // Paused sockets should not emit, but a chunk already in flight or a late 'end' must not jump the queue.
    if (!canForward(link) || flow.queue.length > 0) {
      flow.queue.push(chunk);
      sync(link);
    } else {
      write(link, direction, chunk);
    }
  };

  /** When one side closes, the other follows: gently after a clean half-close dance, with RST otherwise. */
  const follow = (link: Link, gone: Socket, peer: Socket | null, hadError: boolean): void => {
    if (peer !== null && !peer.destroyed) {
      if (hadError || !gone.readableEnded) reset(peer);
      else peer.end();
    }
    if (link.client.destroyed && (link.upstream === null || link.upstream.destroyed)) {
      links.delete(link);
      stats.open = links.size;
    }
  };

  const connectUpstream = (link: Link): void => {
    const socket = connect({ host: upstream.host, port: upstream.port, allowHalfOpen: true });
    link.upstream = socket;
    socket.pause(); // nothing may flow before sync() says so (it could be stalled again before 'connect')
    socket.on('error', ignore);
    socket.on('connect', () => {
      socket.setNoDelay(true);
      stats.upstream += 1;
      link.connected = true;
      sync(link);
    });
    socket.on('data', (chunk: Buffer) => received(link, 'down', chunk));
    socket.on('end', () => received(link, 'down', null));
    // A failed connect closes with hadError, which resets the client: it must not hang waiting for a broker.
    socket.on('close', (hadError) => follow(link, socket, link.client, hadError || !link.connected));
  };

  const onConnection = (client: Socket): void => {
    stats.accepted += 1;
    client.on('error', ignore);
    if (mode === 'cut' || mode === 'refuse') {
      // Accept then reset, rather than closing the listener: the port stays ours, and the client sees the
      // connection drop the way it would if a firewall or a dying broker killed it.
      stats.cut += 1;
      reset(client);
      return;
    }
    client.setNoDelay(true);
    const link: Link = {
      client,
      upstream: null,
      connected: false,
      up: { queue: [], blocked: false },
      down: { queue: [], blocked: false },
      last: undefined,
    };
    links.add(link);
    stats.open = links.size;
    client.on('data', (chunk: Buffer) => received(link, 'up', chunk));
    client.on('end', () => received(link, 'up', null));
    client.on('close', (hadError) => follow(link, client, link.upstream, hadError));
    // In a stall the connection is held: accepted but not connected upstream until restore().
    if (mode === 'open') connectUpstream(link);
  };

  /** Resets both sides of every link; resolves once all their sockets have closed. */
  const destroyAll = (): Promise<void> => {
    const pending: Promise<void>[] = [];
    for (const link of links) {
      for (const socket of [link.client, link.upstream]) {
        if (socket === null) continue;
        pending.push(closed(socket));
        reset(socket);
      }
    }
    return Promise.all(pending).then(ignore);
  };

  const setMode = async (next: FaultMode): Promise<void> => {
    if (closing !== undefined) return;
    mode = next;
    if (next === 'cut') {
      for (const link of links) if (!link.client.destroyed) stats.cut += 1;
      await destroyAll();
      return;
    }
    for (const link of links) {
      if (link.client.destroyed) continue;
      if (link.upstream === null && next !== 'stall') connectUpstream(link);
      sync(link);
    }
  };

  // pauseOnConnect: a new client is not read from until its link decides so, so no byte can race a stall.
  const server: Server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, onConnection);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.listen?.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  // Accept errors (EMFILE and the like) after startup must not crash the test run.
  server.on('error', ignore);
  const port = (server.address() as AddressInfo).port;

  return {
    host,
    port,
    address: host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`,
    get mode() {
      return mode;
    },
    get stats() {
      return { ...stats };
    },
    cut: () => setMode('cut'),
    stall: () => setMode('stall'),
    refuse: () => setMode('refuse'),
    restore: () => setMode('open'),
    async outage(ms: number) {
      await setMode('cut');
      await new Promise((resolve) => setTimeout(resolve, ms));
      await setMode('open');
    },
    close() {
      closing ??= Promise.all([
        destroyAll(),
        new Promise<void>((resolve) => server.close(() => resolve())),
      ]).then(ignore);
      return closing;
    },
  };
}
