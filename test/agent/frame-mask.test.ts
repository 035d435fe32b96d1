import { createHash } from 'node:crypto';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { AgentClient, noProxyBetween } from '@lowcloud/api/client';

// The client's frames carry an all-zero masking key where nothing between the ends reads them (TLS,
// loopback) and a random one elsewhere (client/index.ts: RFC 6455's mask is for proxies on the way).

/** A WebSocket server by hand on 127.0.0.1: answers the upgrade, then hands over the first frame's head. */
async function firstFrameHead(): Promise<Buffer> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  const head = new Promise<Buffer>((resolve) => {
    server.once('connection', (sock) => {
      let buf = Buffer.alloc(0);
      let upgraded = false;
      sock.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        if (!upgraded) {
          const end = buf.indexOf('\r\n\r\n');
          if (end < 0) return;
          const key = /sec-websocket-key: (\S+)/i.exec(buf.subarray(0, end).toString())?.[1] ?? '';
          const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
          sock.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
          upgraded = true;
          buf = buf.subarray(end + 4);
        }
        if (buf.length >= 8) {
          resolve(buf.subarray(0, 8));
          sock.destroy();
        }
      });
    });
  });
  const connected = AgentClient.connect(`ws://127.0.0.1:${port}`, { timeoutMs: 5000 }).catch((e: unknown) => e);
  const h = await head;
  await connected;
  server.close();
  return h;
}

describe('the client masks frames only where something could read them', () => {
  it('on loopback the first frame (hello) is masked with an all-zero key', async () => {
    const h = await firstFrameHead();
    expect(h[0]).toBe(0x81); // FIN, text
    expect((h[1] as number) & 0x80).toBe(0x80); // the mask bit is set, as RFC 6455 requires of a client
    const len = (h[1] as number) & 0x7f;
    const key = len === 126 ? null : h.subarray(2, 6);
    expect(len).toBeLessThan(126);
    expect(key).toEqual(Buffer.alloc(4));
  });

  it('which connections count as having nothing in between', () => {
    const fake = (remoteAddress: string, encrypted = false) => ({ remoteAddress, encrypted }) as unknown as net.Socket;
    expect(noProxyBetween(fake('127.0.0.1'))).toBe(true);
    expect(noProxyBetween(fake('127.8.0.3'))).toBe(true);
    expect(noProxyBetween(fake('::1'))).toBe(true);
    expect(noProxyBetween(fake('::ffff:127.0.0.1'))).toBe(true);
    expect(noProxyBetween(fake('10.0.0.5'))).toBe(false);
    expect(noProxyBetween(fake('fd00::5'))).toBe(false);
    expect(noProxyBetween(fake('::ffff:10.0.0.5'))).toBe(false);
    expect(noProxyBetween(fake('10.0.0.5', true))).toBe(true);
  });
});
