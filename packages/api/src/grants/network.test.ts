import net from 'node:net';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ErrorCode, InvalidConnectTargetError } from '../errors.js';
import { formatConnectTarget, normalizeConnect, parseConnectTarget, parseConnectTargets, parseNetworkGrant, type ConnectTarget } from './network.js';

const thrown = (f: () => unknown): InvalidConnectTargetError => {
  try {
    f();
  } catch (err) {
    if (err instanceof InvalidConnectTargetError) return err;
    throw err;
  }
  throw new Error('did not throw');
};

describe('parseConnectTarget', () => {
  it('reads each form into its variant, in canonical spelling', () => {
    expect(parseConnectTarget('10.0.0.6:5432')).toEqual({ kind: 'address', family: 4, ip: '10.0.0.6', port: 5432 });
    expect(parseConnectTarget('[FD00:0:0::6]:5432')).toEqual({ kind: 'address', family: 6, ip: 'fd00::6', port: 5432 });
    expect(parseConnectTarget('[::ffff:1.2.3.4]:80')).toEqual({ kind: 'address', family: 6, ip: '::ffff:1.2.3.4', port: 80 });
    expect(parseConnectTarget('10.0.0.0/8:6379')).toEqual({ kind: 'cidr', family: 4, ip: '10.0.0.0', prefix: 8, port: 6379 });
    expect(parseConnectTarget('[fd00::]/8:6379')).toEqual({ kind: 'cidr', family: 6, ip: 'fd00::', prefix: 8, port: 6379 });
    expect(parseConnectTarget('DB.Internal:5432')).toEqual({ kind: 'host', name: 'db.internal', port: 5432 });
    expect(parseConnectTarget('localhost:80')).toEqual({ kind: 'host', name: 'localhost', port: 80 });
  });

  it('a network written with host bits set is its network; a full-length prefix is one address', () => {
    expect(formatConnectTarget(parseConnectTarget('10.1.2.3/8:80'))).toBe('10.0.0.0/8:80');
    expect(formatConnectTarget(parseConnectTarget('[fd00::1:2]/112:80'))).toBe('[fd00::1:0]/112:80');
    expect(parseConnectTarget('10.1.2.3/32:80')).toEqual({ kind: 'address', family: 4, ip: '10.1.2.3', port: 80 });
    expect(formatConnectTarget(parseConnectTarget('[::1]/128:80'))).toBe('[::1]:80');
    expect(formatConnectTarget(parseConnectTarget('0.0.0.0/0:443'))).toBe('0.0.0.0/0:443');
  });

  it('refuses what is not a target, naming the field, the reason and the accepted forms', () => {
    const cases: [string, string][] = [
      ['bogus', 'has no port'],
      ['', 'has no port'],
      ['db:0', 'has port 0, outside 1-65535'],
      ['db:65536', 'has port 65536, outside 1-65535'],
      ['db:0000080', 'has port 0000080, outside 1-65535'],
      ['::1:80', 'is an IPv6 address without brackets or port'],
      ['[db]:80', 'which is not an IPv6 address'],
      ['[fe80::1%eth0]:80', 'has a zone index'],
      ['10.0.0.300:80', 'which is not an IPv4 address'],
      ['10.0.0.0/33:80', 'has prefix length /33'],
      ['[::]/129:80', 'has prefix length /129'],
      ['db.internal/8:80', 'has a prefix length after a name'],
      ['-db:80', 'which is not a host name'],
      ['a..b:80', 'which is not a host name'],
      [`${'a'.repeat(64)}:80`, 'which is not a host name'],
      ['db:80:90', 'is not a connect target'],
      ['db:http', 'is not a connect target'],
    ];
    for (const [text, reason] of cases) {
      const e = thrown(() => parseConnectTarget(text, '--connect'));
      expect(e.code).toBe(ErrorCode.INVALID_CONNECT);
      expect(e.reason).toContain(reason);
      expect(e.message).toBe(`--connect: "${text}" ${e.reason}; use ip:port (10.0.0.6:5432), [ipv6]:port ([fd00::6]:5432), cidr:port (10.0.0.0/8:5432) or host:port (db.internal:5432)`);
      expect(e.details).toEqual({ field: '--connect', value: text });
    }
  });

  it('a process target has no text form yet: formatting one says the planner resolves it', () => {
    expect(() => formatConnectTarget({ kind: 'process', name: 'kv-a', port: 7101 })).toThrow('connect target process kv-a:7101 was not resolved to an address');
  });
});

const v4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((b) => b.join('.'));
const v6 = fc.array(fc.nat(0xffff), { minLength: 8, maxLength: 8 }).map((g) => g.map((x) => x.toString(16)).join(':'));
const port = fc.integer({ min: 1, max: 65535 });
const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?$/);
const text = fc.oneof(
  fc.tuple(v4, port).map(([ip, p]) => `${ip}:${p}`),
  fc.tuple(v4, fc.integer({ min: 0, max: 32 }), port).map(([ip, n, p]) => `${ip}/${n}:${p}`),
  fc.tuple(v6, port).map(([ip, p]) => `[${ip}]:${p}`),
  fc.tuple(v6, fc.integer({ min: 0, max: 128 }), port).map(([ip, n, p]) => `[${ip}]/${n}:${p}`),
  fc.tuple(fc.array(label, { minLength: 1, maxLength: 3 }), port)
    .filter(([ls]) => !/^[0-9.]+$/.test(ls.join('.')))
    .map(([ls, p]) => `${ls.join('.')}:${p}`),
);

describe('connect targets, by property', () => {
  it('the canonical text parses back to the same target, and it is its own canonical text', () => {
    fc.assert(
      fc.property(text, (s) => {
        const t = parseConnectTarget(s);
        const canonical = formatConnectTarget(t);
        expect(parseConnectTarget(canonical)).toEqual(t);
        expect(formatConnectTarget(parseConnectTarget(canonical))).toBe(canonical);
        if (t.kind === 'address' || t.kind === 'cidr') expect(net.isIP(t.ip)).toBe(t.family);
      }),
    );
  });

  it('a list means the same in any order and with repeats: one canonical list', () => {
    fc.assert(
      fc.property(fc.array(text, { maxLength: 8 }), fc.func(fc.integer()), (list, key) => {
        const shuffled = [...list, ...list.slice(0, 2)].sort((a, b) => key(a) - key(b));
        const canonical = normalizeConnect(list);
        expect(normalizeConnect(shuffled)).toEqual(canonical);
        expect([...canonical].sort()).toEqual(canonical);
        expect(new Set(canonical).size).toBe(canonical.length);
        expect(normalizeConnect(canonical)).toEqual(canonical);
      }),
    );
  });
});

describe('parseConnectTargets and parseNetworkGrant', () => {
  it('sorts and de-duplicates by canonical text; a bad entry is named by its index', () => {
    const list = parseConnectTargets(['db:5432', '10.0.0.6:5432', '[::1]:80', '10.0.0.6/32:5432', 'DB:5432']);
    expect(list.map(formatConnectTarget)).toEqual(['10.0.0.6:5432', '[::1]:80', 'db:5432']);
    expect(() => parseConnectTargets(['db:5432', 'bogus'], 'grants.network.connect')).toThrow('grants.network.connect.1: "bogus" has no port');
  });

  it('a network grant becomes what the sandbox enforces', () => {
    const access = parseNetworkGrant({ listen: [7000], connect: ['db:1', '10.0.0.0/8:2'] });
    expect(access).toEqual<{ listen: number[]; connect: ConnectTarget[]; udp: boolean }>({
      listen: [7000],
      connect: [
        { kind: 'cidr', family: 4, ip: '10.0.0.0', prefix: 8, port: 2 },
        { kind: 'host', name: 'db', port: 1 },
      ],
      udp: false,
    });
  });
});
