import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import http from 'node:http';
import { beforeAll, describe, expect, it } from 'vitest';
import { sha256Hex, type AgentEvent, type ProcessStatus } from '@lowcloud/api';
import { verifyAuditLog } from '@lowcloud/node-agent';
import { repoRoot, runCli } from '../helpers/cli.js';
import { useAgentFixture, uploadSpec, type RunningAgent } from '../helpers/agent.js';
import { guest, waitFor } from '../helpers/guests.js';

const fx = useAgentFixture();
const hello = path.join(repoRoot, 'examples/hello/bin/hello.wasm');
let agent: RunningAgent;
beforeAll(async () => {
  // A short backoff base for the one real run of the mechanism (the schedule itself is unit-tested).
  agent = await fx.start({ env: { LOWCLOUD_BACKOFF_BASE_MS: '200' } });
});

describe('supervision, logs, metrics, audit', () => {
  it('a guest that exits at once is restarted with growing delays and shows crash-loop', async () => {
    const c = await fx.connect(agent);
    const events: AgentEvent[] = [];
    await c.watch((e) => events.push(e));
    const spec = await uploadSpec(c, 'crasher', guest('hello'), { args: ['1'] });
    await c.start(spec);
    await waitFor(() => events.filter((e) => e.kind === 'restarted').length >= 3, 15_000, 'three restarts');
    const died = events.filter((e) => e.kind === 'died').map((e) => Date.parse(e.at));
    const restarted = events.filter((e) => e.kind === 'restarted').map((e) => Date.parse(e.at));
    const gaps = restarted.slice(0, 3).map((t, i) => t - (died[i] as number));
    expect(gaps[0]).toBeGreaterThanOrEqual(190);
    expect(gaps[1]).toBeGreaterThanOrEqual(390);
    expect(gaps[2]).toBeGreaterThanOrEqual(790);
    expect(events.some((e) => e.kind === 'crash-loop')).toBe(true);
    // Between tries (most of the time: the guest lives ~0.1 s, the next try is seconds away) status
    // says crash-loop, with the last exit and when the next try comes.
    let st: ProcessStatus | undefined;
    await waitFor(async () => {
      st = (await c.status()).processes.find((p) => p.name === 'crasher');
      return st?.state === 'crash-loop';
    }, 10_000, 'status to show crash-loop');
    expect(st?.restarts).toBeGreaterThanOrEqual(3);
    expect(st?.lastExit).toEqual({ kind: 'exit', code: 1 });
    expect(Date.parse(st?.nextRestart ?? '')).toBeGreaterThan(Date.parse(events.at(-1)?.at ?? ''));
    await c.stop('crasher', 500);
    c.close();
  });

  it('logs tail and follow; /metrics has per-process and agent metrics', async () => {
    const c = await fx.connect(agent);
    await c.start(await uploadSpec(c, 'talker', guest('hello'), { args: ['0', 'x'], restart: 'never' }));
    const lines: string[] = [];
    await waitFor(async () => {
      lines.length = 0;
      await c.logs('talker', { tail: 10 }, (l) => lines.push(l));
      await new Promise((r) => setTimeout(r, 50));
      return lines.includes('to stderr');
    }, 5000, 'the log');
    // stdout and stderr share the log; libc flushes buffered stdout at exit, after the unbuffered stderr line.
    expect([...lines].sort()).toEqual(['argc=3', 'argv[0]=talker', 'argv[1]=0', 'argv[2]=x', 'to stderr']);

    // Follow: a guest that logs a tick every second; the follower gets the lines written after it
    // started, in order, as they are written.
    await c.start(await uploadSpec(c, 'ticker', hello, { args: ['/etc/hello.conf', '1'], grants: { disk: 2 ** 20, network: { listen: [], connect: [] } } }, { '/etc/hello.conf': 'Tick\n' }));
    const log = path.join(fx.stateDir, 'logs', 'ticker.log');
    await waitFor(() => existsSync(log) && readFileSync(log, 'utf8').includes('(start #1)'), 10_000, 'the ticker to start');
    const linesOf = () => readFileSync(log, 'utf8').split('\n').filter((l) => l !== '');
    const before = linesOf();
    const followed: string[] = [];
    const unfollow = await c.logs('ticker', { tail: 1, follow: true }, (l) => followed.push(l));
    await waitFor(() => followed.filter((l) => !before.includes(l)).length >= 2, 10_000, 'two lines written after following began');
    unfollow();
    // In file order, nothing lost or doubled, from the tail line on; at least two of them written
    // after the follower started (each tick line is unique).
    const written = linesOf();
    const from = written.indexOf(followed[0] as string);
    expect(from).toBeGreaterThanOrEqual(0);
    expect(followed).toEqual(written.slice(from, from + followed.length));
    expect(followed.filter((l) => !before.includes(l)).every((l) => /^Tick \(tick \d+\)$/.test(l))).toBe(true);
    await c.stop('ticker', 500);
    const body = await new Promise<string>((resolve, reject) =>
      http.get(agent.metricsUrl ?? 'http://127.0.0.1:1/metrics', (res) => {
        let b = '';
        res.on('data', (d: Buffer) => (b += d.toString()));
        res.on('end', () => resolve(b));
      }).on('error', reject),
    );
    for (const m of ['lowcloud_agent_uptime_seconds', 'lowcloud_agent_calls_total{type="start",result="ok"}', 'lowcloud_process_restarts{process="talker"} 0', 'lowcloud_process_memory_bytes', 'lowcloud_process_grant_violations_total']) {
      expect(body).toContain(m);
    }
    await c.stop('talker', 500);
    c.close();
  });

  it('every accepted call that changes state, each put-blob chunk included, is one line of the hash chain, in order, with its caller\'s key (reads and calls that change nothing are not); an edited line breaks the chain', async () => {
    const file = path.join(fx.stateDir, 'audit.log');
    const linesNow = () => readFileSync(file, 'utf8').trimEnd().split('\n');
    const c = await fx.connect(agent);
    const spec = await uploadSpec(c, 'audited', guest('sleeper'), { args: ['60'] });
    const before = linesNow().length;
    const data = randomBytes(3 * 1024);
    await c.putBlob(sha256Hex(data), data, 1024); // three chunks
    await c.start(spec);
    await c.start(spec); // already running with this spec: changes nothing
    await c.status();
    await c.stop('audited', 500);
    await c.stop('audited', 500); // not running: changes nothing
    const added = linesNow()
      .slice(before)
      .map((l) => JSON.parse(l) as { type: string; key?: string; process?: string; blob?: { offset: number } });
    expect(added.map((e) => `${e.type} ${e.process ?? e.blob?.offset}`)).toEqual(['put-blob 0', 'put-blob 1024', 'put-blob 2048', 'start audited', 'stop audited']);
    for (const e of added) expect(e.key).toBe(fx.operator.publicKey);
    expect(verifyAuditLog(file)).toMatchObject({ ok: true, entries: linesNow().length });

    const lines = linesNow();
    lines[1] = (lines[1] as string).replace('"type":"start"', '"type":"stop"').replace('"type":"put-blob"', '"type":"stop"');
    writeFileSync(`${file}.edited`, `${lines.join('\n')}\n`);
    expect(verifyAuditLog(`${file}.edited`)).toMatchObject({ ok: false, line: 2 });
  });

  it('refuses plain ws:// off loopback, and a trust file that is not a key', async () => {
    const r = await runCli(['agent', '--listen', '0.0.0.0:0', '--state', path.join(fx.dir, 's2'), '--insecure-loopback']);
    expect(r).toMatchObject({ code: 1, stderr: 'error: --insecure-loopback: plain ws:// is only allowed on loopback, not 0.0.0.0; drop the flag to serve wss://\n' });
    writeFileSync(path.join(fx.dir, 'bad.pub'), 'ssh-rsa AAAA\n');
    const t = await runCli(['agent', '--listen', '127.0.0.1:0', '--state', path.join(fx.dir, 's3'), '--trust', path.join(fx.dir, 'bad.pub')]);
    expect(t.code).toBe(1);
    expect(t.stderr).toContain('is not an ed25519 public key');
  });
});
