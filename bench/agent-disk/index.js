// bench/agent-disk: `status` latency while a guest has 50,000 files in its /data (issue 10: every
// status used to walk them on the agent's event loop), against the same agent with only a guest
// whose /data is empty (the baseline, measured in the same run).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateKeyPair, sha256Hex } from '@lowcloud/api';
import { AgentClient } from '@lowcloud/api/client';
import { startLocalAgent } from '../agent/local-agent.js';

const FILES = Number(process.env.BENCH_FILES ?? 50_000);
const CALLS = 100;
const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.join(here, '../..');
const dir = mkdtempSync(path.join(tmpdir(), 'lowcloud-bench-disk-'));
const operator = generateKeyPair();
writeFileSync(path.join(dir, 'ci.pub'), operator.publicKey);
const quantile = (xs, q) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * q))];

const { proc: agentProc, url, key } = await startLocalAgent(dir);
const c = await AgentClient.connect(url, { pinnedKey: key, signer: operator, timeoutMs: 120_000 });
const wasm = readFileSync(path.join(root, 'test/fixtures/guests/manyfiles.wasm'));
await c.putBlob(sha256Hex(wasm), wasm);
const start = (name, files) =>
  c.start({ name, binary: sha256Hex(wasm), args: ['/data', String(files)], env: {}, config: {}, grants: { disk: 2 ** 30, network: { listen: [], connect: [] } }, restart: 'never' });
const made = async (name, files) => {
  const log = path.join(dir, `state/logs/${name}.log`);
  for (let i = 0; i < 6000; i++) {
    try {
      if (readFileSync(log, 'utf8').includes(`made ${files}`)) return;
    } catch {
      // not written yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${name} did not make its files`);
};
let duringWalk = 0;
const latencies = async () => {
  const xs = [];
  duringWalk = 0;
  for (let i = 0; i < CALLS; i++) {
    const t = performance.now();
    const st = await c.status();
    xs.push(performance.now() - t);
    if (st.processes.some((p) => p.usage?.diskMeasuring === true)) duringWalk++;
  }
  return xs;
};

await start('empty', 0);
await made('empty', 0);
await new Promise((r) => setTimeout(r, 1000));
const base = await latencies();
await start('many', FILES);
await made('many', FILES);
const kicked = Date.now();
const many = await latencies();
// When the figure of the first walk arrived (agents that walk on every call have no such field).
let walkMs = null;
for (let i = 0; i < 600; i++) {
  const u = (await c.status()).processes.find((p) => p.name === 'many')?.usage;
  if (u?.diskMeasuredAt === undefined) break;
  if (u.diskMeasuredAt !== null) {
    walkMs = Date.parse(u.diskMeasuredAt) - kicked;
    break;
  }
  await new Promise((r) => setTimeout(r, 50));
}
const walk = walkMs === null ? '' : `; ${duringWalk} of them answered while the background walk ran (it took ${walkMs} ms)`;
console.log(`status with a guest holding ${FILES} files in /data (median of ${CALLS}): ${quantile(many, 0.5).toFixed(2)} ms, p95 ${quantile(many, 0.95).toFixed(2)} ms${walk} | baseline, only an empty /data: ${quantile(base, 0.5).toFixed(2)} ms -> ${(quantile(many, 0.5) / quantile(base, 0.5)).toFixed(1)}x`);
await c.stop('many', 1000);
await c.stop('empty', 1000);
c.close();
agentProc.kill('SIGTERM');
await new Promise((r) => agentProc.once('exit', r));
rmSync(dir, { recursive: true, force: true });
