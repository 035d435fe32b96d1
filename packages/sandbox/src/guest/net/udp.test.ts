import dgram from 'node:dgram';
import { afterAll, describe, expect, it } from 'vitest';
import { parseConnectTarget } from '@lowcloud/api';
import { componentImports } from '../component/imports.js';
import { compilePolicy } from './policy.js';

/**
 * UDP sends through the real preview2-shim sockets (its I/O worker, real datagrams on loopback),
 * with the imports a component gets: a datagram reaches a granted target only.
 */
const receivers: dgram.Socket[] = [];
afterAll(() => receivers.forEach((r) => r.close()));

async function receiver(): Promise<{ port: number; got: string[] }> {
  const s = dgram.createSocket('udp4');
  receivers.push(s);
  const got: string[] = [];
  s.on('message', (m) => got.push(m.toString()));
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  return { port: s.address().port, got };
}

async function freeUdpPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

type Sock = { startBind(n: object, a: object): void; finishBind(): void; stream(r?: object): [object, { checkSend(): bigint; send(d: object[]): bigint }] };
const addr = (port: number) => ({ tag: 'ipv4', val: { port, address: [127, 0, 0, 1] } });

async function attempt(f: () => unknown): Promise<string> {
  for (let i = 0; i < 200; i++) {
    try {
      f();
      return 'ok';
    } catch (e) {
      if (e !== 'would-block') return String(e);
      await new Promise((r) => setTimeout(r, 5));
    }
  }
  return 'would-block';
}

describe('UDP sends (runtime layer of the network grant)', () => {
  it('a socket bound to its granted port sends only to granted targets, by stream remote or per datagram', async () => {
    const granted = await receiver();
    const other = await receiver();
    const local = await freeUdpPort();
    const policy = await compilePolicy({ listen: [local], connect: [parseConnectTarget(`127.0.0.1:${granted.port}`)], udp: true }, async () => []);
    const imports = componentImports({ argv: [], env: {}, policy, preopens: [], stdout: () => undefined, stderr: () => undefined });
    const network = (imports['wasi:sockets/instance-network'] as { instanceNetwork(): object }).instanceNetwork();
    const create = (imports['wasi:sockets/udp-create-socket'] as { createUdpSocket(f: string): Sock }).createUdpSocket;
    const sock = create('ipv4');
    sock.startBind(network, addr(local));
    expect(await attempt(() => sock.finishBind())).toBe('ok');
    const [, out] = sock.stream();
    const send = (port: number, text: string) => attempt(() => out.send([{ data: new TextEncoder().encode(text), remoteAddress: addr(port) }]));
    expect(await send(other.port, 'to an ungranted port')).toBe('access-denied');
    expect(await send(granted.port, 'to the granted target')).toBe('ok');
    // Connected to an ungranted remote: refused when the stream is made; to the granted one, sends
    // without naming the destination go there.
    expect(await attempt(() => sock.stream(addr(other.port)))).toBe('access-denied');
    const [, connected] = sock.stream(addr(granted.port));
    expect(await attempt(() => connected.send([{ data: new TextEncoder().encode('connected') }]))).toBe('ok');
    expect(await attempt(() => connected.send([{ data: new TextEncoder().encode('elsewhere'), remoteAddress: addr(other.port) }]))).toBe('access-denied');
    await new Promise((r) => setTimeout(r, 300));
    expect(granted.got.sort()).toEqual(['connected', 'to the granted target']);
    expect(other.got).toEqual([]);
  });
});
