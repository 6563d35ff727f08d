import { createHash, randomBytes } from 'node:crypto';
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { type FaultProxy, startFaultProxy } from '../src/fault-proxy.js';

const HOST = '127.0.0.1';
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Echo {
  readonly port: number;
  /** Connections the echo server has accepted so far. */
  readonly accepted: () => number;
  close(): Promise<void>;
}

/** An upstream that writes back whatever it reads, and half-closes when its client does. */
async function startEcho(): Promise<Echo> {
  const sockets = new Set<Socket>();
  let accepted = 0;
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    accepted += 1;
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
    socket.pipe(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  return {
    port: (server.address() as AddressInfo).port,
    accepted: () => accepted,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A client socket that records what it receives and how it ended. */
interface Client {
  readonly socket: Socket;
  readonly received: () => Buffer;
  /** Resolves once `bytes` bytes have arrived; rejects after `ms` or if the socket closes first. */
  waitFor(bytes: number, ms?: number): Promise<Buffer>;
  /** Resolves when the socket closes, whichever way. */
  readonly closed: Promise<void>;
  readonly ended: Promise<void>;
}

async function open(port: number): Promise<Client> {
  const socket = connect({ host: HOST, port, allowHalfOpen: true });
  const chunks: Buffer[] = [];
  let size = 0;
  const waiters = new Set<() => void>();
  socket.on('error', () => {});
  socket.on('data', (chunk: Buffer) => {
    chunks.push(chunk);
    size += chunk.length;
    for (const waiter of waiters) waiter();
  });
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  const ended = new Promise<void>((resolve) => socket.once('end', () => resolve()));
  socket.once('close', () => {
    for (const waiter of waiters) waiter();
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const received = () => Buffer.concat(chunks);
  return {
    socket,
    received,
    closed,
    ended,
    waitFor: (bytes, ms = 2_000) =>
      new Promise<Buffer>((resolve, reject) => {
        const check = () => {
          if (size >= bytes) finish(() => resolve(received()));
          else if (socket.destroyed) finish(() => reject(new Error(`closed after ${size}/${bytes} bytes`)));
        };
        const timer = setTimeout(
          () => finish(() => reject(new Error(`timeout at ${size}/${bytes} bytes`))),
          ms,
        );
        const finish = (settle: () => void) => {
          clearTimeout(timer);
          waiters.delete(check);
          settle();
        };
        waiters.add(check);
        check();
      }),
  };
}

/** Connects, sends a ping and reports whether it came back ('ok') or the connection failed ('failed'). */
async function probe(port: number, ms = 2_000): Promise<'ok' | 'failed' | 'timeout'> {
  let client: Client;
  try {
    client = await open(port);
  } catch {
    return 'failed';
  }
  client.socket.write('ping');
  try {
    await client.waitFor(4, ms);
    return client.received().toString() === 'ping' ? 'ok' : 'failed';
  } catch (error) {
    return String(error).includes('timeout') ? 'timeout' : 'failed';
  } finally {
    client.socket.destroy();
  }
}

/** Runs `body` with an echo server behind a fresh proxy, and tears both down afterwards. */
async function withProxy(body: (proxy: FaultProxy, echo: Echo) => Promise<void>): Promise<void> {
  const echo = await startEcho();
  const proxy = await startFaultProxy({ upstream: { host: HOST, port: echo.port } });
  try {
    await body(proxy, echo);
  } finally {
    await proxy.close();
    await echo.close();
  }
}

const within = <T>(promise: Promise<T>, ms: number): Promise<T> =>
  Promise.race([promise, sleep(ms).then(() => Promise.reject(new Error(`not within ${ms} ms`)))]);

describe('startFaultProxy', () => {
  it('listens on 127.0.0.1 with an ephemeral port and forwards bytes both ways', () =>
    withProxy(async (proxy) => {
      expect(proxy.host).toBe(HOST);
      expect(proxy.port).toBeGreaterThan(0);
      expect(proxy.address).toBe(`${HOST}:${proxy.port}`);
      expect(proxy.mode).toBe('open');
      const client = await open(proxy.port);
      client.socket.write('hello ');
      client.socket.write('world');
      expect((await client.waitFor(11)).toString()).toBe('hello world');
      client.socket.destroy();
    }));

  it('propagates a half-close: the client ends, the echo still answers, then ends too', () =>
    withProxy(async (proxy) => {
      const client = await open(proxy.port);
      client.socket.end('last words');
      await within(client.ended, 2_000);
      expect(client.received().toString()).toBe('last words');
      await within(client.closed, 2_000);
    }));

  it('cut() drops open connections promptly and refuses new ones until restore()', () =>
    withProxy(async (proxy) => {
      const client = await open(proxy.port);
      client.socket.write('x');
      await client.waitFor(1);
      await proxy.cut();
      expect(proxy.mode).toBe('cut');
      await within(client.closed, 1_000);
      expect(await probe(proxy.port)).toBe('failed');
      await proxy.restore();
      expect(proxy.mode).toBe('open');
      expect(await probe(proxy.port)).toBe('ok');
    }));

  it('stall() holds bytes back and restore() delivers exactly them, in order', () =>
    withProxy(async (proxy) => {
      const client = await open(proxy.port);
      client.socket.write('warm');
      await client.waitFor(4);
      await proxy.stall();
      const payload = randomBytes(256 * 1024); // more than one socket buffer, so backpressure is exercised
      const parts = [Buffer.from('first|'), payload, Buffer.from('|last')];
      for (const part of parts) client.socket.write(part);
      await sleep(300);
      expect(client.received().length).toBe(4);
      expect(client.socket.destroyed).toBe(false);
      await proxy.restore();
      const expected = Buffer.concat([Buffer.from('warm'), ...parts]);
      const got = await client.waitFor(expected.length, 5_000);
      expect(got.equals(expected)).toBe(true);
      client.socket.destroy();
    }));

  it('stall() holds new connections without dialling upstream, then connects them on restore()', () =>
    withProxy(async (proxy, echo) => {
      await proxy.stall();
      const before = echo.accepted();
      const client = await open(proxy.port);
      client.socket.write('held');
      await sleep(300);
      expect(client.received().length).toBe(0);
      expect(echo.accepted()).toBe(before);
      expect(proxy.stats.open).toBe(1);
      await proxy.restore();
      expect((await client.waitFor(4)).toString()).toBe('held');
      expect(echo.accepted()).toBe(before + 1);
      client.socket.destroy();
    }));

  it('refuse() keeps existing connections working while new ones fail', () =>
    withProxy(async (proxy) => {
      const client = await open(proxy.port);
      await proxy.refuse();
      expect(proxy.mode).toBe('refuse');
      expect(await probe(proxy.port)).toBe('failed');
      client.socket.write('still here');
      expect((await client.waitFor(10)).toString()).toBe('still here');
      await proxy.restore();
      expect(await probe(proxy.port)).toBe('ok');
      client.socket.destroy();
    }));

  it('outage(200) cuts, then restores by itself', () =>
    withProxy(async (proxy) => {
      const client = await open(proxy.port);
      const started = Date.now();
      const outage = proxy.outage(200);
      await within(client.closed, 1_000);
      expect(proxy.mode).toBe('cut');
      expect(await probe(proxy.port, 150)).toBe('failed');
      await outage;
      expect(Date.now() - started).toBeGreaterThanOrEqual(195);
      expect(proxy.mode).toBe('open');
      expect(await probe(proxy.port)).toBe('ok');
    }));

  it('counts accepted, cut and forwarded bytes, upstream connections and turns', () =>
    withProxy(async (proxy) => {
      const zero = { open: 0, accepted: 0, cut: 0, bytesUp: 0, bytesDown: 0, upstream: 0, turns: 0 };
      expect(proxy.stats).toEqual(zero);
      const a = await open(proxy.port);
      const b = await open(proxy.port);
      a.socket.write('12345');
      b.socket.write('678');
      await a.waitFor(5);
      await b.waitFor(3);
      expect(proxy.stats).toEqual({
        open: 2,
        accepted: 2,
        cut: 0,
        bytesUp: 8,
        bytesDown: 8,
        upstream: 2,
        turns: 2,
      });
      // A request after its reply is a new turn; bytes sent while no reply came back are not.
      a.socket.write('9');
      await a.waitFor(6);
      expect(proxy.stats.turns).toBe(3);
      await proxy.cut();
      expect(proxy.stats).toMatchObject({ open: 0, accepted: 2, cut: 2 });
      expect(await probe(proxy.port)).toBe('failed');
      expect(proxy.stats).toMatchObject({ open: 0, accepted: 3, cut: 3 });
      await proxy.restore();
      expect(await probe(proxy.port)).toBe('ok');
      // Refused connections never reach the upstream.
      expect(proxy.stats).toMatchObject({ accepted: 4, cut: 3, bytesUp: 13, bytesDown: 13, upstream: 3 });
    }));

  it('close() is idempotent, drops connections and frees the port', async () => {
    const echo = await startEcho();
    const proxy = await startFaultProxy({ upstream: { host: HOST, port: echo.port } });
    const client = await open(proxy.port);
    await Promise.all([proxy.close(), proxy.close()]);
    await proxy.close();
    await within(client.closed, 1_000);
    expect(proxy.stats.open).toBe(0);
    await proxy.restore(); // a no-op once closed
    const again: Server = createServer();
    await new Promise<void>((resolve, reject) => {
      again.once('error', reject);
      again.listen(proxy.port, HOST, resolve);
    });
    await new Promise<void>((resolve) => again.close(() => resolve()));
    await echo.close();
  });

  it('cut() and close() settle even while connections are half-closed', () =>
    withProxy(async (proxy) => {
      // Regression: resetAndDestroy() on a socket whose FIN is still being sent fails with EINVAL and Node
      // then never emits 'close', so cut() used to hang. Racing end() against cut() hits that window.
      for (let round = 0; round < 40; round += 1) {
        const client = await open(proxy.port);
        client.socket.end(Buffer.alloc(64 * 1024, round));
        await sleep(round % 4);
        await within(proxy.cut(), 1_000);
        await within(client.closed, 1_000);
        await proxy.restore();
      }
      const last = await open(proxy.port);
      last.socket.end('bye');
      await last.waitFor(3);
    }));

  it('carries 5 MB intact both ways', () =>
    withProxy(async (proxy) => {
      const payload = randomBytes(5 * 1024 * 1024);
      const client = await open(proxy.port);
      client.socket.end(payload);
      const got = await client.waitFor(payload.length, 20_000);
      const hash = (data: Buffer) => createHash('sha256').update(data).digest('hex');
      expect(got.length).toBe(payload.length);
      expect(hash(got)).toBe(hash(payload));
      expect(proxy.stats).toMatchObject({ bytesUp: payload.length, bytesDown: payload.length });
    }));

  it('closes client connections when the upstream is down instead of hanging', async () => {
    const gone = await startEcho();
    await gone.close(); // the port is now (almost certainly) refused
    const proxy = await startFaultProxy({ upstream: { host: HOST, port: gone.port } });
    try {
      const client = await open(proxy.port);
      client.socket.write('anyone?');
      await within(client.closed, 2_000);
      expect(client.received().length).toBe(0);
      expect(proxy.stats.open).toBe(0);
    } finally {
      await proxy.close();
    }
  });

  it('rejects when the listen port is taken', async () => {
    const echo = await startEcho();
    try {
      await expect(
        startFaultProxy({ upstream: { host: HOST, port: 1 }, listen: { host: HOST, port: echo.port } }),
      ).rejects.toThrow(/EADDRINUSE/);
    } finally {
      await echo.close();
    }
  });
});

const RABBIT = { host: HOST, port: 5672 };
const rabbitUp = await new Promise<boolean>((resolve) => {
  const socket = connect(RABBIT);
  const done = (up: boolean) => {
    socket.destroy();
    resolve(up);
  };
  socket.setTimeout(500, () => done(false));
  socket.once('connect', () => done(true));
  socket.once('error', () => done(false));
});

describe('against a real broker', () => {
  it.skipIf(!rabbitUp)(
    rabbitUp
      ? 'speaks AMQP to RabbitMQ through the proxy, and cut() closes the socket'
      : 'speaks AMQP to RabbitMQ through the proxy (skipped: nothing listening on 127.0.0.1:5672)',
    async () => {
      const proxy = await startFaultProxy({ upstream: RABBIT });
      try {
        const client = await open(proxy.port);
        client.socket.write(Buffer.from('AMQP\x00\x00\x09\x01', 'latin1'));
        const frame = await client.waitFor(11, 5_000);
        expect(frame[0]).toBe(1); // method frame
        expect(frame.readUInt16BE(1)).toBe(0); // channel 0
        expect(frame.readUInt16BE(7)).toBe(10); // class: connection
        expect(frame.readUInt16BE(9)).toBe(10); // method: start
        await proxy.cut();
        await within(client.closed, 1_000);
      } finally {
        await proxy.close();
      }
    },
  );
});
