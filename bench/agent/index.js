// bench/agent: one real agent on loopback, driven through the real client.
//   (1) start 200 guests through the API: guests/s, agent + guests memory (PSS)
//   (2) replace-config -> the process running with the new config (median of 20)
//   (3) call latency (status) with the 200 guests running, against raw WebSocket round trips to an
//       echo server in another process that answers with as many bytes as that status reply (the floor)
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { WebSocket } from 'ws';
import { generateKeyPair, sha256Hex, specDigest } from '@lowcloud/api';
import { AgentClient } from '@lowcloud/api/client';
import { startLocalAgent } from './local-agent.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.join(here, '../..');
const dir = mkdtempSync(path.join(tmpdir(), 'lowcloud-bench-agent-'));
const operator = generateKeyPair();
writeFileSync(path.join(dir, 'ci.pub'), operator.publicKey);
const readLog = (f) => {
  try {
    return readFileSync(f, 'utf8');
  } catch {
    return '';
  }
};
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const pss = (pid) => {
  try {
    return Number(/Pss:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] ?? 0) * 1024;
  } catch {
    return 0;
  }
};

const { proc: agentProc, url, key } = await startLocalAgent(dir);
const c = await AgentClient.connect(url, { pinnedKey: key, signer: operator, timeoutMs: 120_000 });
const wasm = readFileSync(path.join(root, 'test/fixtures/guests/sleeper.wasm'));
await c.putBlob(sha256Hex(wasm), wasm);
const N = Number(process.env.BENCH_GUESTS ?? 200);
const grants = { memory: 16 * 2 ** 20, network: { listen: [], connect: [] } };
let t = performance.now();
for (let i = 0; i < N; i++) await c.start({ name: `g${i}`, binary: sha256Hex(wasm), args: [], env: {}, config: {}, grants, restart: 'always' });
const startSecs = (performance.now() - t) / 1000;
await new Promise((r) => setTimeout(r, 2000));
const st = await c.status();
const running = st.processes.filter((p) => p.state === 'running').length;
const guestPss = st.processes.reduce((s, p) => s + (p.pid ? pss(p.pid) : 0), 0);
const agentPss = pss(agentProc.pid);
console.log(`start ${N} guests through the API: ${startSecs.toFixed(1)} s -> ${(N / startSecs).toFixed(1)} guests/s (${running} running)`);
console.log(`memory with ${N} guests: agent PSS ${(agentPss / 2 ** 20).toFixed(1)} MiB, guests PSS ${(guestPss / 2 ** 20).toFixed(0)} MiB total (${(guestPss / N / 2 ** 20).toFixed(1)} MiB per guest)`);
// (3) call latency with the guests running (status reads every guest's usage) vs raw round trips
// to an echo server in a separate process (so neither side shares the client's event loop)
const statusBytes = Buffer.byteLength(JSON.stringify(await c.status()));
const calls = [];
for (let i = 0; i < 200; i++) {
  t = performance.now();
  await c.status();
  calls.push(performance.now() - t);
}
const echoSrc = `const { WebSocketServer } = require('ws'); const reply = Buffer.alloc(Number(process.argv[1]), 120);
const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
wss.on('connection', (ws) => ws.on('message', () => ws.send(reply)));
wss.on('listening', () => console.log(wss.address().port));`;
const echo = spawn(process.execPath, ['-e', echoSrc, String(statusBytes)], { stdio: ['ignore', 'pipe', 'inherit'], cwd: root });
process.on('exit', () => echo.kill('SIGKILL'));
const echoPort = await new Promise((resolve) => echo.stdout.once('data', (d) => resolve(Number(String(d).trim()))));
const raw = new WebSocket(`ws://127.0.0.1:${echoPort}`);
await new Promise((r) => raw.once('open', r));
const rtts = [];
for (let i = 0; i < 200; i++) {
  t = performance.now();
  await new Promise((r) => {
    raw.once('message', r);
    raw.send(JSON.stringify({ type: 'status', id: String(i) }));
  });
  rtts.push(performance.now() - t);
}
raw.close();
echo.kill('SIGTERM');
console.log(`call latency (status with ${running} guests running, ${(statusBytes / 1024).toFixed(0)} KiB reply, median of 200): ${median(calls).toFixed(2)} ms | raw WebSocket round trip to an echo server in another process, same reply size ${median(rtts).toFixed(2)} ms -> ${(median(calls) / median(rtts)).toFixed(1)}x the floor`);
for (let i = 0; i < N; i++) await c.stop(`g${i}`, 1000);

// (2) replace-config -> running with the new config
const hello = readFileSync(path.join(root, 'examples/hello/bin/hello.wasm'));
await c.putBlob(sha256Hex(hello), hello);
let conf = Buffer.from('greeting 0\n');
await c.putBlob(sha256Hex(conf), conf);
let spec = { name: 'cfg', binary: sha256Hex(hello), args: ['/etc/hello.conf', '60'], env: {}, config: { '/etc/hello.conf': sha256Hex(conf) }, grants: { disk: 2 ** 20, network: { listen: [], connect: [] } }, restart: 'always' };
await c.start(spec);
const log = path.join(dir, 'state/logs/cfg.log');
const latencies = [];
for (let i = 1; i <= 20; i++) {
  conf = Buffer.from(`greeting ${i}\n`);
  await c.putBlob(sha256Hex(conf), conf);
  spec = { ...spec, config: { '/etc/hello.conf': sha256Hex(conf) } };
  t = performance.now();
  await c.replaceConfig('cfg', spec.config, specDigest(spec));
  while (!readLog(log).includes(`greeting ${i}, world!`)) await new Promise((r) => setTimeout(r, 2));
  latencies.push(performance.now() - t);
}
console.log(`replace-config -> running with the new config: median ${median(latencies).toFixed(0)} ms of 20 (min ${Math.min(...latencies).toFixed(0)}, max ${Math.max(...latencies).toFixed(0)})`);
await c.stop('cfg', 1000);

c.close();
agentProc.kill('SIGTERM');
await new Promise((r) => agentProc.once('exit', r));
rmSync(dir, { recursive: true, force: true });
