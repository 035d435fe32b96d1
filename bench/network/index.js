// bench/network: what an unauthenticated peer can make one real agent hold, and what signing every
// call (reads too) costs.
//   (1) agent RSS while 64 connections (16 from each of four loopback addresses, the per-address
//       limit) each send a frame header announcing 15 MiB and then 15 MiB of payload, never
//       finishing it; baseline: the same agent's RSS just before. (Before issue 10: +960 MiB.)
//   (2) signed status round trip (median of 500, no guests; this agent allows any connection rate,
//       as (2) opens 100 connections in a row) against an unsigned raw WebSocket
//       round trip to the same agent (a hello: parse, sign, reply), the floor of any call.
//   (3) blob-status of 10,000 digests the agent does not have (what a read key may ask at most in
//       one call; median of 20) against the signed status of (2). (Before: ~223 ms, a stat and an
//       existence check per digest on the event loop.)
//   (4) a TLS reconnect flood from one address (4 clients in a loop, 3 s): the agent's CPU time
//       with --connect-rate 100000 (no limit in effect) against the default (20/s, burst 40).
//   (5) a cheap flood from many prefixes (16 clients, 3 s): each connection sends one recorded TLS
//       ClientHello and closes once the agent answered (the agent does its whole share of the
//       handshake, the client almost nothing), from 82 addresses of one /24 (what ~82 /64s of one
//       /56 are to IPv6), then from 256 /16s of 127/8 in turn: handshakes and agent CPU with the
//       defaults (per-prefix rates, --connect-budget 100) against no limit in effect.
import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateKeyPair } from '@lowcloud/api';
import { AgentClient } from '@lowcloud/api/client';
import { WebSocket } from 'ws';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.join(here, '../..');
const dir = mkdtempSync(path.join(tmpdir(), 'lowcloud-bench-network-'));
const operator = generateKeyPair();
writeFileSync(path.join(dir, 'ci.pub'), operator.publicKey);
const rss = (pid) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
const mib = (b) => `${(b / 2 ** 20).toFixed(1)} MiB`;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

process.on('exit', () => agentProc.kill('SIGKILL'));
const agentProc = spawn(process.execPath, [path.join(root, 'bin/lowcloud.js'), 'agent', '--listen', '127.0.0.1:0', '--state', path.join(dir, 'state'), '--trust', path.join(dir, 'ci.pub'), '--insecure-loopback', '--metrics-listen', 'off', '--connect-rate', '100000'], { stdio: ['ignore', 'pipe', 'inherit'] });
const [url, key] = await new Promise((resolve) => {
  let out = '';
  agentProc.stdout.on('data', (d) => {
    out += d;
    const m = /listening on (\S+) key (\S+)/.exec(out);
    if (m) resolve([m[1], m[2]]);
  });
});
const port = Number(new URL(url).port);

// (1)
function upgrade(localAddress) {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress }, () =>
      s.write(`GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`),
    );
    s.on('error', () => undefined);
    s.once('data', () => resolve(s));
    s.once('close', () => resolve(s));
  });
}
await new Promise((r) => setTimeout(r, 500));
const before = rss(agentProc.pid);
let peak = before;
const sampler = setInterval(() => (peak = Math.max(peak, rss(agentProc.pid))), 20);
const socks = await Promise.all(Array.from({ length: 64 }, (_, i) => upgrade(`127.${1 + (i % 4)}.0.1`)));
const head = Buffer.alloc(14);
head[0] = 0x81;
head[1] = 0x80 | 127;
head.writeBigUInt64BE(BigInt(15 * 2 ** 20), 2);
const chunk = Buffer.alloc(2 ** 20, 0x61);
let written = 0;
await Promise.all(
  socks.map(async (s) => {
    s.write(head);
    for (let i = 0; i < 15 && !s.destroyed; i++) {
      const part = i === 14 ? chunk.subarray(1) : chunk;
      written += part.length;
      if (!s.write(part)) await new Promise((r) => (s.once('drain', r), s.once('close', r)));
    }
  }),
);
await new Promise((r) => setTimeout(r, 1000));
clearInterval(sampler);
const closed = socks.filter((s) => s.destroyed || s.readyState === 'closed').length;
socks.forEach((s) => s.destroy());
console.log(`64 x unfinished 15 MiB frames: agent RSS ${mib(before)} -> peak ${mib(peak)} (+${mib(peak - before)}; ${closed}/64 connections closed by the agent; ${mib(written)} accepted by the kernel)`);

// (2)
const c = await AgentClient.connect(url, { pinnedKey: key, signer: operator });
const hello = (w) => new Promise((r) => (w.once('message', r), w.send(JSON.stringify({ type: 'hello', id: randomUUID(), challenge: randomBytes(16).toString('hex') }))));
const signed = [];
const raw = [];
for (let i = 0; i < 500; i++) {
  const t = performance.now();
  await c.status();
  signed.push(performance.now() - t);
}
// An unauthenticated connection may send 8 messages: a fresh one every 5 hellos.
for (let i = 0; i < 100; i++) {
  const w = new WebSocket(url);
  await new Promise((r) => w.once('open', r));
  for (let j = 0; j < 5; j++) {
    const t = performance.now();
    await hello(w);
    raw.push(performance.now() - t);
  }
  w.close();
}
const s = median(signed);
const r = median(raw);
console.log(`signed status (no guests), median of 500: ${s.toFixed(2)} ms; unsigned hello round trip (the floor: parse, one signature, reply) ${r.toFixed(2)} ms; ratio ${(s / r).toFixed(2)}x`);

// (3)
const digests = Array.from({ length: 10_000 }, () => randomBytes(32).toString('hex'));
const bs = [];
for (let i = 0; i < 20; i++) {
  const t = performance.now();
  await c.blobStatus(digests);
  bs.push(performance.now() - t);
}
const b = median(bs);
console.log(`blob-status of 10,000 unknown digests, median of 20: ${b.toFixed(2)} ms; signed status ${s.toFixed(2)} ms; ratio ${(b / s).toFixed(1)}x`);
c.close();
agentProc.kill('SIGKILL');

// (4)
const cpu = (pid) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
};
let floods = 0;
/** A TLS 1.3 ClientHello, recorded once: sending it makes the agent do its share of a handshake. */
const clientHello = await new Promise((resolve) => {
  const srv = net.createServer((s) => s.once('data', (d) => (resolve(d), s.destroy(), srv.close()))).listen(0, '127.0.0.1', () => {
    tls.connect({ port: srv.address().port, host: '127.0.0.1', rejectUnauthorized: false, minVersion: 'TLSv1.3' }).on('error', () => undefined);
  });
});
async function flood(rate, addresses = ['127.0.0.1'], clients = 4, replay = false) {
  const p = spawn(process.execPath, [path.join(root, 'bin/lowcloud.js'), 'agent', '--listen', '127.0.0.1:0', '--state', path.join(dir, `tls-${floods++}`), '--trust', path.join(dir, 'ci.pub'), '--metrics-listen', 'off', '--connect-rate', String(rate), '--connect-budget', rate === 20 ? '100' : String(rate)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const tlsPort = await new Promise((resolve) => {
    let out = '';
    p.stdout.on('data', (d) => {
      out += d;
      const m = /listening on wss:\/\/[^:]+:(\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
  });
  await new Promise((r) => setTimeout(r, 500));
  const cpu0 = cpu(p.pid);
  const end = Date.now() + 3000;
  let handshakes = 0;
  let attempts = 0;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (Date.now() < end) {
        const localAddress = addresses[attempts++ % addresses.length];
        await new Promise((resolve) => {
          if (replay) {
            const s = net.connect({ port: tlsPort, host: '127.0.0.1', localAddress }, () => s.write(clientHello));
            s.once('data', () => (handshakes++, s.destroy()));
            s.on('error', () => undefined);
            s.on('close', resolve);
            return;
          }
          const s = tls.connect({ port: tlsPort, host: '127.0.0.1', localAddress, rejectUnauthorized: false, minVersion: 'TLSv1.3' }, () => (handshakes++, s.destroy()));
          s.on('error', () => undefined);
          s.on('close', resolve);
        });
      }
    }),
  );
  const used = cpu(p.pid) - cpu0;
  p.kill('SIGKILL');
  return { used, handshakes, attempts };
}
const open = await flood(100000);
const limited = await flood(20);
console.log(`TLS reconnect flood from one address, 4 clients, 3 s: no rate limit in effect: ${open.handshakes} handshakes of ${open.attempts} connections, agent CPU ${open.used.toFixed(2)} s | default --connect-rate 20: ${limited.handshakes} handshakes of ${limited.attempts} connections (the rest closed at accept), agent CPU ${limited.used.toFixed(2)} s -> ${(open.used / Math.max(limited.used, 0.01)).toFixed(1)}x less CPU, ${(open.used / open.handshakes * 1000).toFixed(2)} vs ${(limited.used / limited.attempts * 1000).toFixed(3)} ms a connection`);

// (5)
const oneSlash24 = Array.from({ length: 82 }, (_, i) => `127.50.7.${i + 1}`);
const slash16s = Array.from({ length: 256 }, (_, i) => `127.${i}.0.1`);
for (const [what, addresses] of [['82 addresses of one /24', oneSlash24], ['256 /16s in turn', slash16s]]) {
  const free = await flood(100000, addresses, 16, true);
  const held = await flood(20, addresses, 16, true);
  console.log(`ClientHello flood from ${what}, 16 clients, 3 s: no limit in effect: ${free.handshakes} handshakes of ${free.attempts}, agent CPU ${free.used.toFixed(2)} s (${((free.used / 3) * 100).toFixed(0)}% of its thread) | defaults: ${held.handshakes} handshakes of ${held.attempts} (${(held.handshakes / 3).toFixed(0)}/s), agent CPU ${held.used.toFixed(2)} s (${((held.used / 3) * 100).toFixed(0)}%) -> ${(free.handshakes / Math.max(held.handshakes, 1)).toFixed(1)}x fewer handshakes`);
}
rmSync(dir, { recursive: true, force: true });
