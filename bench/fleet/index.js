// bench/fleet: fleet-wide commands over slow links. 25, 50 and 100 real agents on this machine,
// each behind the test suite's latency proxy (test/helpers/latency-proxy.ts, 100 ms each way),
// one process each (the sleeper guest). Timed, as an operator runs them (a fresh `lowcloud`
// process each): `lowcloud apply plan.json` of a plan with one call per machine (a start, its
// binary uploaded first), `lowcloud status`, and `lowcloud up` with nothing to do. Each is printed
// as wall time, as round trips (time / RTT) and with the client's CPU time; target <= 10 round
// trips each, whatever the machine count. Baseline in the same run: `lowcloud --version` (Node.js
// start-up and module loading: what any command costs before its first round trip).
// `--sizes 10,25` picks machine counts; `--isolation shared` runs the sleepers as `shared` processes,
// whose first start on an agent takes the guest host the agent keeps warm from its start (a
// `process` guest's first start on an agent starts its own host: a Node.js start-up each, all at
// once on this machine's 2 cores).
import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import ts from 'typescript';
import { generateKeyPair, privateKeyPem } from '@lowcloud/api';
import { mapLimited } from '@lowcloud/planner';
import { startLocalAgent } from '../agent/local-agent.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.join(here, '../..');
const args = process.argv.slice(2);
const sizes = args.includes('--sizes') ? args[args.indexOf('--sizes') + 1].split(',').map(Number) : [25, 50, 100];
const isolation = args.includes('--isolation') ? args[args.indexOf('--isolation') + 1] : 'process';
if (isolation !== 'process' && isolation !== 'shared') throw new Error(`--isolation: process or shared, not ${isolation}`);
const ONE_WAY_MS = 100;
const RTT = 2 * ONE_WAY_MS;
const TARGET_RTTS = 10;

// The proxy is the test suite's, compiled here as it is (the bench runs without a TypeScript loader).
const dir = mkdtempSync(path.join(tmpdir(), 'lowcloud-bench-fleet-'));
const proxySource = readFileSync(path.join(root, 'test/helpers/latency-proxy.ts'), 'utf8');
writeFileSync(path.join(dir, 'latency-proxy.mjs'), ts.transpileModule(proxySource, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText);
const { startLatencyProxy } = await import(pathToFileURL(path.join(dir, 'latency-proxy.mjs')).href);

const operator = generateKeyPair();
writeFileSync(path.join(dir, 'ci.pub'), `${operator.publicKey}\n`);
writeFileSync(path.join(dir, 'ci.key'), privateKeyPem(operator.privateKey), { mode: 0o600 });
const agents = [];
process.setMaxListeners(0); // bench/agent's startLocalAgent adds an exit listener per agent
const proxies = [];
process.on('exit', () => {
  for (const a of agents) a.proc.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

/** CPU-seconds this machine's cores spent busy so far (every process: the agents and guests, the client, other work). */
function busySeconds() {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  return (f.reduce((a, b) => a + b, 0) - idle) / 100;
}

const memAvailableMiB = () => Number(/MemAvailable:\s+(\d+)/.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1]) / 1024;

/** `lowcloud <argv>` in a fresh process: wall time, its CPU time, exit code, output. */
function lowcloud(argv, cwd) {
  return new Promise((resolve) => {
    const busy = busySeconds();
    const t = performance.now();
    const child = spawn(process.execPath, [path.join(root, 'bench/plan/cli-with-peak.js'), ...argv], { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LOWCLOUD_KEY: path.join(dir, 'ci.key'), CI: '1' } });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('exit', (code) => {
      const ms = performance.now() - t;
      const cpu = Number(/cpu-ms (\d+)/.exec(err)?.[1] ?? NaN);
      resolve({ ms, cpu, busy: busySeconds() - busy, code, out, err });
    });
  });
}

// The machine's cores busy during the step, of the cores x wall time they had: near 100%, the figure is bound by CPU, not by round trips.
const fmt = (r) => `${(r.ms / 1000).toFixed(2)} s = ${(r.ms / RTT).toFixed(1)} RTT, client CPU ${(r.cpu / 1000).toFixed(2)} s; machine busy ${r.busy.toFixed(1)} CPU-s (${((100 * r.busy) / ((cpus().length * r.ms) / 1000)).toFixed(0)}% of ${cpus().length} cores)`;

console.log(`node ${process.version}, load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}, RTT ${RTT} ms (proxy: ${ONE_WAY_MS} ms each way), sleepers' isolation: ${isolation}`);
const startup = await lowcloud(['--version'], dir);
console.log(`baseline: \`lowcloud --version\` ${(startup.ms / 1000).toFixed(2)} s = ${(startup.ms / RTT).toFixed(1)} RTT (Node.js start-up, no round trip), CPU ${(startup.cpu / 1000).toFixed(2)} s`);
const rows = [];
const memBefore = memAvailableMiB();
for (const n of sizes) {
  // Agents (and their proxies) are added to those of the smaller size before.
  const t0 = performance.now();
  const more = await mapLimited(
    Array.from({ length: n - agents.length }, (_, i) => agents.length + i),
    8,
    async (i) => {
      const adir = path.join(dir, `agent-${i}`);
      mkdirSync(adir);
      copyFileSync(path.join(dir, 'ci.pub'), path.join(adir, 'ci.pub'));
      const a = await startLocalAgent(adir);
      const proxy = await startLatencyProxy({ target: { host: '127.0.0.1', port: Number(new URL(a.url).port) }, delayMs: [ONE_WAY_MS, ONE_WAY_MS] });
      return { i, a, proxy };
    },
  );
  for (const r of more) {
    if (r.status === 'rejected') throw r.reason;
    agents[r.value.i] = r.value.a;
    proxies[r.value.i] = r.value.proxy;
  }
  const startedMs = performance.now() - t0;
  const work = path.join(dir, `fleet-${n}`);
  mkdirSync(path.join(work, 'bin'), { recursive: true });
  copyFileSync(path.join(root, 'test/fixtures/guests/sleeper.wasm'), path.join(work, 'bin/sleeper.wasm'));
  const machines = agents.slice(0, n).map((a, i) => `  m${i}:\n    agent: ws://127.0.0.1:${proxies[i].port}\n    key: ${a.key}\n    capacity: { memory: 1GiB }`);
  const processes = agents.slice(0, n).map((_, i) => `  p${i}:\n    machine: m${i}\n    binary: bin/sleeper.wasm\n    grants: { memory: 16MiB }\n    restart: always${isolation === 'shared' ? '\n    isolation: shared' : ''}`);
  writeFileSync(path.join(work, 'infra.yaml'), `version: 1\nmachines:\n${machines.join('\n')}\nprocesses:\n${processes.join('\n')}\n`);

  const planned = await lowcloud(['plan', '--live', 'infra.yaml', '--out', 'plan.json'], work);
  if (planned.code !== 0) throw new Error(`plan --live failed: ${planned.err}`);
  const memAgents = memAvailableMiB();
  const apply = await lowcloud(['apply', 'plan.json'], work);
  if (apply.code !== 0 || !apply.out.includes(`Apply complete: ${n} call(s) made`)) throw new Error(`apply failed: ${apply.out}${apply.err}`);
  const memGuests = memAvailableMiB();
  // The longest call, from the progress lines (`m3: start p3 ok (1.2s)`): the agent starting a guest, which here competes for the 2 cores with every other agent's.
  const slowest = Math.max(...[...apply.err.matchAll(/: start \S+ ok \((\d+(?:\.\d+)?)(ms|s)\)/g)].map((m) => Number(m[1]) * (m[2] === 's' ? 1000 : 1)));
  // The machine with nothing asked of it (agents and guests up; other work on it too): the CPU the steps below share.
  const idle0 = busySeconds();
  await new Promise((r) => setTimeout(r, 2000));
  const idleBusy = (100 * (busySeconds() - idle0)) / (2 * cpus().length);
  const status = await lowcloud(['status', 'infra.yaml'], work);
  if (status.code !== 0) throw new Error(`status: exit ${status.code}: ${status.out}${status.err}`);
  const plan = await lowcloud(['plan', '--live', 'infra.yaml'], work);
  if (plan.code !== 0 || !plan.out.includes('No changes')) throw new Error(`plan --live: ${plan.out}${plan.err}`);
  const up = await lowcloud(['up', 'infra.yaml'], work);
  if (up.code !== 0 || !up.out.includes('No changes')) throw new Error(`up: ${up.out}${up.err}`);
  const down = await lowcloud(['down', 'infra.yaml'], work);
  if (down.code !== 0) throw new Error(`down: ${down.out}${down.err}`);
  const row = { n, plan, apply, status, up, down, idleBusy, agentsMiB: (memBefore - memAgents) / n, guestsMiB: (memAgents - memGuests) / n, load: loadavg()[0] };
  rows.push(row);
  console.log(`${n} agents (started in ${(startedMs / 1000).toFixed(1)} s; ~${row.agentsMiB.toFixed(0)} MiB each, ~${row.guestsMiB.toFixed(0)} MiB a guest, from MemAvailable; load ${row.load.toFixed(1)}; machine ${row.idleBusy.toFixed(0)}% busy with nothing asked):`);
  console.log(`  apply plan.json, ${n} starts (one a machine, binary uploaded): ${fmt(apply)}`);
  console.log(`    of which the slowest start call (sent to answered: the agent starting its guest) ${(slowest / 1000).toFixed(2)} s; without it ${((apply.ms - slowest) / RTT).toFixed(1)} RTT`);
  console.log(`  status:                     ${fmt(status)}`);
  console.log(`  up, nothing to do:          ${fmt(up)}`);
  console.log(`  plan --live, no changes:    ${fmt(plan)}`);
  console.log(`  (down, ${n} stops: ${fmt(down)})`);
}
const over = rows.flatMap((r) => ['apply', 'status', 'up'].filter((k) => r[k].ms / RTT > TARGET_RTTS).map((k) => `${k} at ${r.n}`));
console.log(over.length === 0 ? `target <= ${TARGET_RTTS} round trips each: OK` : `OVER TARGET (<= ${TARGET_RTTS} round trips): ${over.join(', ')}`);
for (const p of proxies) await p.close();
for (const a of agents) a.proc.kill('SIGTERM');
