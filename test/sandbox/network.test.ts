import { existsSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { spawnGuest } from '@lowcloud/sandbox';
import { alive, waitFor } from '../helpers/guests.js';
import { machineFacts } from '../helpers/machine-facts.js';
import { execFileSync, spawn } from 'node:child_process';
import { cliPath } from '../helpers/cli.js';
import { freePort, vethOf } from '../helpers/net.js';

const netguest = 'test/fixtures/guests/netguest.component.wasm';
const children: number[] = [];
afterAll(() => {
  for (const pid of children) if (alive(pid)) process.kill(pid, 'SIGKILL');
});

function startServer(port: number, connections: number): Promise<{ pid: number; output: () => string }> {
  const child = spawn(process.execPath, [cliPath, 'run', netguest, '--listen', String(port), '--', 'server', String(port), String(connections)], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child.pid as number);
  let out = '';
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  return new Promise((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('listening on')) resolve({ pid: child.pid as number, output: () => out });
    });
    child.on('exit', (code) => reject(new Error(`server exited ${code}: ${out}`)));
  });
}

function nodeEcho(port: number, msg: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1', () => sock.write(`${msg}\n`));
    let got = '';
    sock.on('data', (d) => {
      got += d.toString();
      if (got.endsWith('\n')) sock.end();
    });
    sock.on('close', () => resolve(got));
    sock.on('error', reject);
    sock.setTimeout(5000, () => sock.destroy(new Error('timeout')));
  });
}

describe('WASI 0.2 components with network grants', () => {
  it('a guest listens on its granted port and serves a Node client and a guest client allowed to connect', async () => {
    const port = await freePort();
    const server = await startServer(port, 2);
    expect(await nodeEcho(port, 'from node')).toBe('from node\n');
    const client = await runCli(['run', netguest, '--connect', `127.0.0.1:${port}`, '--', 'client', '127.0.0.1', String(port), 'from a guest']);
    expect(client).toMatchObject({ code: 0, stdout: 'reply: from a guest\n' });
    // It serves exactly two connections, then exits.
    await waitFor(() => !alive(server.pid), 10_000, 'the server to exit after its two connections');
  });

  it('binding a port it was not granted is denied inside the guest', async () => {
    const port = await freePort();
    const r = await runCli(['run', netguest, '--listen', String(port + 1 > 65535 ? port - 1 : port + 1), '--', 'bind', String(port)]);
    expect(r).toMatchObject({ code: 1, stdout: 'bind: access-denied\n' });
  });

  it('connecting to a target it was not granted is denied inside the guest, even if something listens there', async () => {
    const port = await freePort();
    const listener = net.createServer((s) => s.end());
    await new Promise<void>((r) => listener.listen(port, '127.0.0.1', r));
    try {
      const other = await runCli(['run', netguest, '--connect', `127.0.0.1:${port === 65535 ? 1 : port + 1}`, '--', 'client', '127.0.0.1', String(port), 'x']);
      expect(other).toMatchObject({ code: 1, stdout: 'connect: access-denied\n' });
      const cidrMiss = await runCli(['run', netguest, '--connect', `10.0.0.0/8:${port}`, '--', 'client', '127.0.0.1', String(port), 'x']);
      expect(cidrMiss).toMatchObject({ code: 1, stdout: 'connect: access-denied\n' });
    } finally {
      listener.close();
    }
  });

  it('name lookup works only for hosts named in the grant', async () => {
    const denied = await runCli(['run', netguest, '--', 'lookup', 'localhost']);
    expect(denied).toMatchObject({ code: 1, stdout: 'lookup: access-denied\n' });
    const allowed = await runCli(['run', netguest, '--connect', 'localhost:80', '--', 'lookup', 'localhost']);
    expect(allowed.code).toBe(0);
    expect(allowed.stdout).toContain('address 127.0.0.1\n');
  });

  it('UDP is denied unless granted', async () => {
    expect(await runCli(['run', netguest, '--', 'udp'])).toMatchObject({ code: 1, stdout: 'udp: access-denied\n' });
    expect(await runCli(['run', netguest, '--udp', '--', 'udp'])).toMatchObject({ code: 0, stdout: 'udp: ok\n' });
  });

  it('a component reads its config file at its guest path (read-only mount of exactly that file)', async () => {
    const port = await freePort();
    const conf = path.join(tmpdir(), `kv-${port}.conf`);
    writeFileSync(conf, `name=from-config\nport=${port}\n`);
    const child = spawn(process.execPath, [cliPath, 'run', 'examples/kv-cluster/bin/kv-store.wasm', '--config', `/etc/kv.conf=${conf}`, '--listen', String(port), '--', '/etc/kv.conf'], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child.pid as number);
    const line = await new Promise<string>((resolve) => {
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('\n')) resolve(out);
      });
    });
    expect(line).toBe(`kv-store from-config listening on 0.0.0.0:${port}\n`);
    child.kill('SIGTERM');
  });

  it('reports the allow-list as the network enforcement', async () => {
    const r = await runCli(['run', netguest, '--listen', '7999', '--connect', '127.0.0.1:5432', '--verbose', '--', 'udp']);
    expect(r.stderr).toContain('network  runtime  wasi:sockets allow-list: listen [7999], connect [127.0.0.1:5432], UDP denied, name lookup only for granted hosts');
    // Components get directories and the disk grant too: see fs-components.test.ts.
  });
});

describe.each([
  { mode: 'veth', tuning: {} },
  { mode: 'pasta', tuning: { netns: 'pasta' } as const },
])('network grant, kernel layer ($mode: nftables in its namespace, or on the guest cgroup v2)', ({ mode, tuning }) => {
  /** Connect from this (unconfined) process; resolves with the reply or the error code. */
  const probe = (port: number) =>
    new Promise<string>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.on('data', (d) => {
        resolve(d.toString().trim());
        s.destroy();
      });
      s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
      s.setTimeout(5000, () => s.destroy(new Error('timeout')));
    });

  it('holds for every socket in the guest cgroup, whatever the runtime layer does: granted connect and listen work, the rest is refused by the kernel', async (ctx) => {
    const facts = machineFacts();
    if (!facts.nftables) {
      ctx.skip(`kernel network layer unavailable here: ${facts.why.nftables}; the runtime layer is tested above`);
      return;
    }
    if (mode === 'veth' && !(facts.root && facts.wall)) return ctx.skip(`a veth namespace is made by the root wall, unavailable here: ${facts.why.wall}`);
    // The guest host in a namespace of its own: over a veth pair (the default), or through pasta
    // (asked for; the host's namespace where pasta is not installed: the cgroup table filters it).
    const [guestPort, spare, unlisted, granted, ungranted] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
    const servers = [granted, ungranted].map((p) => net.createServer((s) => s.end(`hello from ${p}\n`)).listen(p, '127.0.0.1'));
    const g = await spawnGuest({
      wasm: path.resolve(netguest),
      args: ['server', String(guestPort), '5'],
      env: {},
      dirs: [],
      config: [],
      grants: { network: { listen: [guestPort, spare], connect: [`127.0.0.1:${granted}`] } },
      stdout: 'pipe',
      stderr: 'pipe',
    }, tuning);
    children.push(g.pid);
    // A process that ignores every runtime rule, placed in the guest's cgroup: only the kernel stops it.
    const intruderCode = (listen: number[]) => `const net = require('node:net');
         const say = (s) => process.stdout.write(s + '\\n');
         const dial = (p) => new Promise((r) => { const s = net.connect(p, '127.0.0.1'); s.on('data', (d) => { r(String(d).trim()); s.destroy(); }); s.on('error', (e) => r(e.code)); });
         process.stdin.once('data', async () => {
           say('granted: ' + await dial(${granted}));
           say('ungranted: ' + await dial(${ungranted}));
           for (const p of [${listen.join(', ')}]) await new Promise((r) => net.createServer((s) => s.end('intruder ' + p + '\\n')).listen(p, '127.0.0.1', r));
           say('listening');
         });`;
    // One in the host's network namespace: the nftables table on the cgroup refuses what is not granted.
    const intruder = spawn(process.execPath, ['-e', intruderCode([unlisted])], { stdio: ['pipe', 'pipe', 'inherit'] });
    children.push(intruder.pid as number);
    let inside: ReturnType<typeof spawn> | null = null;
    let cgroup: string | undefined;
    let veth: string | undefined;
    const root = existsSync('/sys/fs/cgroup/cgroup.controllers') ? '/sys/fs/cgroup' : '/sys/fs/cgroup/unified';
    const run = async (p: ReturnType<typeof spawn>) => {
      if (cgroup !== undefined) writeFileSync(path.join(root, cgroup, 'cgroup.procs'), String(p.pid));
      let out = '';
      p.stdout?.on('data', (d: Buffer) => (out += d.toString()));
      p.stdin?.write('go\n');
      await waitFor(() => out.includes('listening'), 10_000, 'the intruder to try');
      return out;
    };
    try {
      let guestOut = '';
      g.child.stdout?.on('data', (d: Buffer) => (guestOut += d.toString()));
      await waitFor(() => guestOut.includes('listening on'), 20_000, 'the guest to listen');
      const summary = `listen [${guestPort}, ${spare}], connect [127.0.0.1:${granted}], no UDP`;
      veth = vethOf(g.pid);
      cgroup = /^0::(\/lowcloud\/g-\S+)$/m.exec(readFileSync(`/proc/${g.pid}/cgroup`, 'utf8'))?.[1];
      if (mode === 'veth') {
        // Its allow-list is loaded inside its namespace; a cgroup table on the host would see none
        // of its packets, and none is made (nor its cgroup v2 directory, where that is all it was for).
        expect(g.report.network[0]).toEqual({ level: 'kernel', mechanism: `nftables allow-list inside the guest host's own network namespace, loaded before it runs (${summary})` });
      } else {
        expect(cgroup).toBeDefined();
        expect(g.report.network[0]).toEqual({ level: 'kernel', mechanism: `nftables allow-list on the guest's cgroup v2 (${summary})` });
        expect(await run(intruder)).toBe(`granted: hello from ${granted}\nungranted: ECONNREFUSED\nlistening\n`);
        expect(await probe(unlisted)).toBe('ECONNREFUSED');
      }
      const ownNs = readlinkSync(`/proc/${g.pid}/ns/net`) !== readlinkSync('/proc/self/ns/net');
      if (mode === 'veth') expect(ownNs).toBe(true);
      if (ownNs) {
        // The guest host's own namespace. Through pasta its sockets leave through pasta, which is in
        // the guest's cgroup, so the same table filters them; over a veth pair the allow-list inside
        // filters every socket there. Either way a granted port reaches a listener inside.
        const procs = mode === 'pasta' ? readFileSync(path.join(root, cgroup as string, 'cgroup.procs'), 'utf8').trim().split('\n') : [];
        if (mode === 'pasta') expect(procs.some((pid) => /^pasta/.test(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0]?.split('/').pop() ?? ''))).toBe(true);
        inside = spawn('nsenter', [`--net=/proc/${g.pid}/ns/net`, process.execPath, '-e', intruderCode([spare, unlisted])], { stdio: ['pipe', 'pipe', 'inherit'] });
        children.push(inside.pid as number);
        expect(await run(inside)).toBe(`granted: hello from ${granted}\nungranted: ECONNREFUSED\nlistening\n`);
        expect(await probe(spare)).toBe(`intruder ${spare}`);
        expect(await probe(unlisted)).toBe('ECONNREFUSED');
      }
      expect(await nodeEcho(guestPort, 'the guest itself still serves')).toBe('the guest itself still serves\n');
    } finally {
      intruder.kill('SIGKILL');
      inside?.kill('SIGKILL');
      await new Promise((r) => setTimeout(r, 100));
      await g.stop(1000);
      servers.forEach((s) => s.close());
    }
    // The guest's tables (its cgroup's, or its veth pair's on the host) and cgroup are gone with it.
    if (mode === 'veth') expect(veth).toMatch(/^lcv\d+$/);
    const table = cgroup === undefined ? `lowcloud_veth_${veth}\n` : `lowcloud_${path.basename(cgroup).replace(/-/g, '_')}`;
    await waitFor(() => !execFileSync('nft', ['list', 'tables']).toString().includes(table) && (cgroup === undefined || !existsSync(path.join(root, cgroup))), 5000, `table ${table} and its cgroup to be removed`);
  });
});

describe('no network grant, kernel layer', () => {
  it("the walled guest host sits in an empty network namespace of its own: nothing outside it is reached, and no firewall table is made for it", async (ctx) => {
    const facts = machineFacts();
    if (!(facts.root && facts.wall)) return ctx.skip(`needs root and the wall: ${facts.root ? facts.why.wall : 'not root'}; the runtime layer (no socket imports in preview1) holds everywhere`);
    const port = await freePort();
    const server = net.createServer((s) => s.end('reached\n')).listen(port, '127.0.0.1');
    const before = execFileSync('nft', ['list', 'tables']).toString();
    const g = await spawnGuest({ wasm: path.resolve('test/fixtures/guests/sleeper.wasm'), args: [], env: {}, dirs: [], config: [], grants: { memory: 16 * 2 ** 20, network: { listen: [], connect: [] } }, stdout: 'pipe', stderr: 'pipe' });
    children.push(g.pid);
    try {
      expect(g.report.network[0]).toEqual({ level: 'kernel', mechanism: "an empty network namespace of its own (the wall's): loopback alone, no route to any other address" });
      expect(readlinkSync(`/proc/${g.pid}/ns/net`)).not.toBe(readlinkSync('/proc/self/ns/net'));
      expect(execFileSync('nft', ['list', 'tables']).toString()).toBe(before);
      // Code in its namespace that ignores every runtime rule: the host's port is not there, no other address is routed.
      const inside = execFileSync('nsenter', [`--net=/proc/${g.pid}/ns/net`, process.execPath, '-e', `const net = require('node:net');
        const dial = (h) => new Promise((r) => { const s = net.connect(${port}, h); s.on('connect', () => { r('connected'); s.destroy(); }); s.on('error', (e) => r(e.code)); s.setTimeout(3000, () => { r('timeout'); s.destroy(); }); });
        (async () => process.stdout.write(JSON.stringify([await dial('127.0.0.1'), await dial('10.255.255.1'), require('node:os').networkInterfaces()])))();`]).toString();
      const [loopback, away, ifs] = JSON.parse(inside) as [string, string, Record<string, unknown>];
      expect(loopback).toBe('ECONNREFUSED');
      expect(away).toBe('ENETUNREACH');
      expect(Object.keys(ifs)).toEqual(['lo']);
    } finally {
      await g.stop(1000);
      server.close();
    }
  });
});

describe('network grant: the targets as parsed', () => {
  it('--connect targets are enforced and reported in their one spelling: sorted, each once', async () => {
    const r = await runCli(['run', netguest, '--connect', 'LocalHost:80', '--connect', '127.0.0.1/32:5432', '--connect', 'localhost:80', '--verbose', '--', 'udp']);
    expect(r.stderr).toContain('network  runtime  wasi:sockets allow-list: listen [], connect [127.0.0.1:5432, localhost:80], UDP denied');
  });

  it('a granted name that does not resolve is said on stderr, not left as a silent empty allow-list', async () => {
    const r = await runCli(['run', netguest, '--connect', 'no-such-host.invalid:80', '--', 'lookup', 'no-such-host.invalid']);
    expect(r.stderr).toMatch(/^lowcloud: connect grant no-such-host\.invalid:80: the name did not resolve \([A-Z_]+\); the guest cannot connect to it until it restarts\n/);
  });
});
