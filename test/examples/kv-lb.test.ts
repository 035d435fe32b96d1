import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cliPath, repoRoot } from '../helpers/cli.js';
import { waitFor } from '../helpers/guests.js';
import { freePort } from '../helpers/net.js';

// examples/kv-cluster's load balancer serves one client at a time. A replica that goes away
// mid-request (moved, restarted) must not stop it: the client is told and its connection ends.
// Before, the client waited for its reply and the balancer for the client's next line, for ever
// (seen as "walk-through step 2" of examples.test.ts timing out with no answer at all).

const lb = path.join(repoRoot, 'examples/kv-cluster/bin/kv-lb.wasm');
const children: ChildProcess[] = [];
const servers: net.Server[] = [];

afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGTERM');
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
});

/** One request line through the balancer: its reply, or 'timeout' (the connection then dropped). */
function ask(port: number, line: string, ms = 5000): Promise<string> {
  return new Promise((resolve) => {
    let got = '';
    const s = net.connect(port, '127.0.0.1', () => s.write(`${line}\n`));
    s.on('data', (d) => {
      got += String(d);
      if (got.includes('\n')) {
        s.destroy();
        resolve(got.trim());
      }
    });
    s.on('error', (e) => resolve(`error ${(e as NodeJS.ErrnoException).code}`));
    s.on('close', () => resolve(got.trim() || 'closed'));
    s.setTimeout(ms, () => {
      s.destroy();
      resolve('timeout');
    });
  });
}

describe('examples/kv-cluster load balancer', () => {
  it('a backend that goes away before it answers: the client gets ERR backend lost, and the balancer serves the next client', async () => {
    const [lbPort, deadPort, livePort] = [await freePort(), await freePort(), await freePort()];
    // Backend 1 takes the request and goes away without a reply; backend 2 answers.
    const dead = net.createServer((s) => s.once('data', () => s.destroy())).listen(deadPort, '127.0.0.1');
    const live = net.createServer((s) => s.on('data', () => s.write('PONG live\n'))).listen(livePort, '127.0.0.1');
    servers.push(dead, live);
    const child = spawn(process.execPath, [cliPath, 'run', lb, '--listen', String(lbPort), '--connect', `127.0.0.1:${deadPort}`, '--connect', `127.0.0.1:${livePort}`, '--env', 'KV_LB_TOKEN=t', '--', String(lbPort), `127.0.0.1:${deadPort}`, `127.0.0.1:${livePort}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let out = '';
    child.stdout?.on('data', (d) => (out += String(d)));
    await waitFor(() => out.includes('listening on port'), 30_000, 'the balancer to listen');
    // Round robin: the first client meets the backend that goes away, the second the live one.
    expect(await ask(lbPort, 'PING')).toBe('ERR backend lost');
    expect(await ask(lbPort, 'PING')).toBe('PONG live');
    await waitFor(() => out.includes('went away mid-request'), 5000, 'the balancer to say so in its log');
  });
});
