import net from 'node:net';

/** An IP address as bytes (4 for IPv4, 16 for IPv6), for prefix matching. */
export type IpAddr = { family: 4 | 6; bytes: number[] };

/** An IP address literal as bytes, or null when `s` is not one (a host name). */
export function parseIp(s: string): IpAddr | null {
  if (net.isIPv4(s)) return { family: 4, bytes: s.split('.').map(Number) };
  if (net.isIPv6(s)) {
    const [head, tail] = s.split('::') as [string, string | undefined];
    const h = head === '' ? [] : head.split(':');
    const t = tail === undefined || tail === '' ? [] : tail.split(':');
    const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
    return { family: 6, bytes: groups.flatMap((g) => [parseInt(g, 16) >> 8, parseInt(g, 16) & 0xff]) };
  }
  return null;
}
