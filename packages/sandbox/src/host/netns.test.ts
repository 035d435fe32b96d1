import { execFileSync } from 'node:child_process';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { parseConnectTarget, type NetworkGrant } from '@lowcloud/api';
import { namespacePorts, PASTA_SHELL, pastaArgs } from './netns.js';

const ports = (g: NetworkGrant) => namespacePorts({ listen: g.listen, connect: g.connect.map((t) => parseConnectTarget(t)), udp: g.udp === true });

describe("namespacePorts: what pasta forwards for a network grant", () => {
  it('listen ports in; only loopback targets (and names, which may resolve there) out to the host loopback', () => {
    expect(ports({ listen: [7100, 7000, 7100], connect: ['127.0.0.1:7101', '[::1]:7102', '10.0.0.6:5432', '10.0.0.0/8:6379', 'db.internal:5433', '127.0.0.0/8:7103'] })).toEqual({
      listen: [7000, 7100],
      loopback: [5433, 7101, 7102, 7103],
      udp: false,
    });
  });

  it('a port both listened on and connected to is not forwarded out (pasta would hold the port the guest binds)', () => {
    expect(ports({ listen: [7101], connect: ['127.0.0.1:7101'], udp: true })).toEqual({ listen: [7101], loopback: [], udp: true });
  });

  it('never leaves a direction to pasta\'s default (`auto`: every port bound on the other side)', () => {
    const shell = PASTA_SHELL;
    for (const opt of ['--tcp-ports', '--tcp-ns', '--udp-ports', '--udp-ns']) expect(shell).toContain(opt);
    expect(pastaArgs()).toEqual(expect.arrayContaining(['--no-map-gw', '--netns-only']));
  });
});

describe('the wall shell: a listen port the host still holds is held inside instead', () => {
  it('forwards a free port in, and a held one (and the loopback targets) out', async () => {
    const server = net.createServer().listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    const held = (server.address() as net.AddressInfo).port;
    try {
      const free = held === 65535 ? held - 1 : held + 1;
      const fns = PASTA_SHELL.split('\n').filter((l) => /^(held|fwd)\(\)/.test(l)).join('\n');
      const out = execFileSync('/bin/sh', ['-c', `${fns}\nloopback=7300; fwd "/proc/net/tcp /proc/net/tcp6" "${free},${held}" 0A`]).toString().trim();
      expect(out).toBe(`${free} ${held},7300`);
    } finally {
      server.close();
    }
  });
});
