import { describe, expect, it } from 'vitest';
import { parseConnectTarget } from '@lowcloud/api';
import { allowsConnect, compilePolicy, parseIp } from './policy.js';

const lookup = async (h: string) => (h === 'db.internal' ? ['10.1.2.3'] : []);

describe('network policy', () => {
  it('allows exactly the granted ip:port, cidr:port and resolved host:port targets', async () => {
    const p = await compilePolicy({ listen: [7000], connect: ['127.0.0.1:5432', '10.0.0.0/8:6379', 'db.internal:5432', '[::1]:80'].map((t) => parseConnectTarget(t)), udp: false }, lookup);
    const ip = (s: string) => parseIp(s) as NonNullable<ReturnType<typeof parseIp>>;
    expect(allowsConnect(p, ip('127.0.0.1'), 5432)).toBe(true);
    expect(allowsConnect(p, ip('127.0.0.1'), 5433)).toBe(false);
    expect(allowsConnect(p, ip('127.0.0.2'), 5432)).toBe(false);
    expect(allowsConnect(p, ip('10.200.0.9'), 6379)).toBe(true);
    expect(allowsConnect(p, ip('11.0.0.1'), 6379)).toBe(false);
    expect(allowsConnect(p, ip('10.1.2.3'), 5432)).toBe(true);
    expect(allowsConnect(p, ip('::1'), 80)).toBe(true);
    expect(allowsConnect(p, ip('::2'), 80)).toBe(false);
    expect([...p.names]).toEqual(['db.internal']);
    expect([...p.listen]).toEqual([7000]);
    expect(p.udp).toBe(false);
    expect(p.unresolved).toEqual([]);
  });

  it('a granted name that does not resolve is reported, with the reason, not left as a silent empty allow-list', async () => {
    const failing = async (h: string) => {
      if (h === 'gone.invalid') throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${h}`), { code: 'ENOTFOUND' });
      return h === 'empty.internal' ? [] : ['10.1.2.3'];
    };
    const p = await compilePolicy({ listen: [], connect: ['db.internal:5432', 'empty.internal:80', 'gone.invalid:80'].map((t) => parseConnectTarget(t)), udp: false }, failing);
    expect(p.unresolved).toEqual([
      { target: 'empty.internal:80', reason: 'no address' },
      { target: 'gone.invalid:80', reason: 'ENOTFOUND' },
    ]);
    expect(p.connect).toHaveLength(1);
  });

  it('a resolved process target allows its address and port, and its name looks up to that address, never through DNS', async () => {
    const asked: string[] = [];
    const p = await compilePolicy(
      { listen: [], connect: ['kv-a@127.0.0.2:7101', 'kv-b@db.internal:7102'].map((t) => parseConnectTarget(t)), udp: false },
      async (h) => {
        asked.push(h);
        return lookup(h);
      },
    );
    const ip = (s: string) => parseIp(s) as NonNullable<ReturnType<typeof parseIp>>;
    expect(allowsConnect(p, ip('127.0.0.2'), 7101)).toBe(true);
    expect(allowsConnect(p, ip('127.0.0.1'), 7101)).toBe(false);
    expect(allowsConnect(p, ip('10.1.2.3'), 7102)).toBe(true);
    expect([...p.names].sort()).toEqual(['kv-a', 'kv-b']);
    expect([...p.aliases]).toEqual([['kv-a', '127.0.0.2'], ['kv-b', 'db.internal']]);
    // Only the host-name address is looked up; the process names never are.
    expect(asked).toEqual(['db.internal']);
  });

  it('an unresolved process target is refused', async () => {
    await expect(compilePolicy({ listen: [], connect: [{ kind: 'process', name: 'kv-a', port: 7101 }], udp: false }, lookup)).rejects.toThrow('connect target process kv-a:7101 was not resolved');
  });
});
