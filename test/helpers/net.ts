import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';

/** A port that was free a moment ago, from the kernel (bind to 0 and read it back). */
export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** GET a loopback URL; resolves with the body. */
export function httpGet(url: string): Promise<string> {
  return new Promise((resolve, reject) =>
    http
      .get(url, (res) => {
        let b = '';
        res.on('data', (d: Buffer) => (b += d.toString()));
        res.on('end', () => resolve(b));
      })
      .on('error', reject),
  );
}

/**
 * The host's end of a guest host's veth pair (`lcv<i>`), found from its `eth0@if<index>` inside
 * the namespace of `pid`; undefined when it has none.
 */
export function vethOf(pid: number): string | undefined {
  try {
    const link = execFileSync('nsenter', [`--net=/proc/${pid}/ns/net`, 'ip', '-o', 'link', 'show', 'eth0'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString();
    const index = /eth0@if(\d+)/.exec(link)?.[1];
    if (index === undefined) return undefined;
    return readdirSync('/sys/class/net').find((i) => i.startsWith('lcv') && readFileSync(`/sys/class/net/${i}/ifindex`, 'utf8').trim() === index);
  } catch {
    return undefined;
  }
}
