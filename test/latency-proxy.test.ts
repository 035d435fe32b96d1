import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { startLatencyProxy } from './helpers/latency-proxy.js';

async function echoServer(): Promise<{ port: number; close(): void }> {
  const s = net.createServer((c) => c.pipe(c));
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return { port: (s.address() as net.AddressInfo).port, close: () => s.close() };
}

function roundTrip(port: number, msg: string): Promise<{ reply: string; ms: number }> {
  const t = Date.now();
  return new Promise((resolve, reject) => {
    const c = net.connect(port, '127.0.0.1', () => c.write(msg));
    let got = '';
    c.on('data', (d) => {
      got += d.toString();
      if (got.length >= msg.length) {
        c.end();
        resolve({ reply: got, ms: Date.now() - t });
      }
    });
    c.on('error', reject);
    c.on('close', () => reject(new Error(`closed before a reply (got ${JSON.stringify(got)})`)));
  });
}

describe('latency proxy (test helper)', () => {
  it('adds the configured delay each way and keeps bytes in order', async () => {
    const echo = await echoServer();
    const proxy = await startLatencyProxy({ target: { host: '127.0.0.1', port: echo.port }, delayMs: [50, 60] });
    const msg = Array.from({ length: 200 }, (_, i) => `line ${i}\n`).join('');
    const r = await roundTrip(proxy.port, msg);
    expect(r.reply).toBe(msg);
    // At least the minimum delay each way (a floor, whatever the load); no upper bound: a loaded
    // machine may add any amount, and the test's timeout catches a proxy that never delivers.
    expect(r.ms).toBeGreaterThanOrEqual(100);
    await proxy.close();
    echo.close();
  });

  it('dropReplies: cuts the connection instead of delivering a matching reply, as many times as asked', async () => {
    const echo = await echoServer();
    const proxy = await startLatencyProxy({ target: { host: '127.0.0.1', port: echo.port }, delayMs: [0, 5], dropReplies: { match: /changed/, count: 1 } });
    expect((await roundTrip(proxy.port, 'plain\n')).reply).toBe('plain\n');
    await expect(roundTrip(proxy.port, 'changed\n')).rejects.toThrow(/closed before a reply/);
    expect((await roundTrip(proxy.port, 'changed\n')).reply).toBe('changed\n');
    expect(proxy.stats.repliesDropped).toBe(1);
    await proxy.close();
    echo.close();
  });
});
