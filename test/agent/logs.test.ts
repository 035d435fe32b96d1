import { readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { useAgentFixture, uploadSpec, type RunningAgent } from '../helpers/agent.js';
import { alive, guest, waitFor } from '../helpers/guests.js';

const MiB = 2 ** 20;

/** The log files of one process (`name.log`, `name.log.1`, ...) with their sizes. */
function logFiles(stateDir: string, name: string): { name: string; size: number }[] {
  const dir = path.join(stateDir, 'logs');
  return readdirSync(dir)
    .filter((f) => f === `${name}.log` || f.startsWith(`${name}.log.`))
    .map((f) => ({ name: f, size: statSync(path.join(dir, f)).size }));
}
const bytesOf = (files: { size: number }[]) => files.reduce((s, f) => s + f.size, 0);
const readLog = (stateDir: string, name: string) => {
  try {
    return readFileSync(path.join(stateDir, 'logs', `${name}.log`), 'utf8');
  } catch {
    return '';
  }
};

describe('logs: the cap counts bytes, not writes', () => {
  const fx = useAgentFixture();
  let agent: RunningAgent;
  beforeAll(async () => {
    agent = await fx.start();
  });

  it('four single 48 MiB writes leave at most 1 MiB x (3 kept + 1) of logs, ending with the newest bytes', async () => {
    const c = await fx.connect(agent);
    await c.start(await uploadSpec(c, 'big', guest('bigwrite'), { args: ['4', String(48 * MiB)], restart: 'never' }));
    await waitFor(() => readLog(fx.stateDir, 'big').endsWith('done\n'), 60_000, 'bigwrite to finish its four writes');
    const files = logFiles(fx.stateDir, 'big');
    for (const f of files) expect(f.size, f.name).toBeLessThanOrEqual(MiB);
    expect(files.length).toBeLessThanOrEqual(4);
    expect(bytesOf(files)).toBeLessThanOrEqual(4 * MiB);
    // What is kept is the end of the last write ('d' x 48 MiB, then a newline), then "done".
    expect(readLog(fx.stateDir, 'big')).toBe('done\n');
    const previous = readFileSync(path.join(fx.stateDir, 'logs', 'big.log.1'), 'utf8');
    expect(previous.length).toBe(MiB);
    expect(previous).toMatch(/^d+\n$/);
    const lines: string[] = [];
    await c.logs('big', { tail: 5 }, (l) => lines.push(l));
    await waitFor(() => lines.length > 0, 5000, 'the tail');
    expect(lines).toEqual(['done']);
    await c.stop('big', 500);
    c.close();
  });
});

describe('logs --follow across rotation, and a log file that disappears', () => {
  const fx = useAgentFixture();
  let agent: RunningAgent;
  beforeAll(async () => {
    agent = await fx.start({ args: ['--log-max-bytes', '256KiB', '--log-keep', '1'] });
  });

  it('a follower of a flooding guest keeps receiving while its log rotates many times; the agent stays up', async () => {
    const c = await fx.connect(agent);
    // flood writes 64 KiB writes of 'y' forever: its 256 KiB log rotates every fourth write.
    await c.start(await uploadSpec(c, 'flood', guest('flood'), { grants: { cpu: 0.5, network: { listen: [], connect: [] } } }));
    const pid = (await c.status()).processes.find((p) => p.name === 'flood')?.pid;
    expect(pid).toBeTypeOf('number');
    let received = 0;
    const stop = await c.logs('flood', { tail: 1, follow: true }, (l) => (received += l.length + 1));
    // Rotations' worth of bytes through one follower (each 256 KiB of it is one rotation).
    await waitFor(() => received > 4 * 256 * 1024, 60_000, 'the follower to receive 1 MiB across rotations');
    expect(alive(agent.pid)).toBe(true);

    // The log file vanishes under the writer and the follower: neither the guest host nor the
    // agent fails. Without the kernel wall the writer makes a new one at its next rotation and the
    // follower moves on to it; inside the wall the guest host sees only the file the agent made for
    // it (a bind mount), so its output goes to the removed file until the process starts again,
    // like any daemon writing to a log that was deleted (docs/security.md, "The wall's limits").
    const walled = (await c.status()).processes.find((p) => p.name === 'flood')?.enforcement?.isolation?.[0]?.level === 'kernel';
    const before = received;
    rmSync(path.join(fx.stateDir, 'logs', 'flood.log'), { force: true });
    rmSync(path.join(fx.stateDir, 'logs', 'flood.log.1'), { force: true });
    if (!walled) await waitFor(() => received > before + 2 * 256 * 1024, 60_000, 'lines after the log file was removed');
    else await new Promise((r) => setTimeout(r, 1000));
    const st = (await c.status()).processes.find((p) => p.name === 'flood');
    expect(st?.pid).toBe(pid);
    expect(st?.restarts).toBe(0);
    expect(alive(agent.pid)).toBe(true);
    for (const f of logFiles(fx.stateDir, 'flood')) expect(f.size, f.name).toBeLessThanOrEqual(256 * 1024);
    stop();
    await c.stop('flood', 500);
    c.close();
  });
});

describe('logs: a cap on all log files of the agent', () => {
  const fx = useAgentFixture();
  let agent: RunningAgent;
  beforeAll(async () => {
    agent = await fx.start({ args: ['--log-max-bytes', '256KiB', '--log-keep', '3', '--log-total', '1MiB'] });
  });

  it('three processes writing 1 MiB each (3 MiB kept per-process rules) end within 1 MiB, current files first', async () => {
    const c = await fx.connect(agent);
    for (const n of ['w1', 'w2', 'w3']) await c.start(await uploadSpec(c, n, guest('bigwrite'), { args: ['1', String(MiB)], restart: 'never' }));
    await waitFor(() => ['w1', 'w2', 'w3'].every((n) => readLog(fx.stateDir, n).endsWith('done\n')), 30_000, 'all three to finish writing');
    const all = () => bytesOf(['w1', 'w2', 'w3'].flatMap((n) => logFiles(fx.stateDir, n)));
    await waitFor(() => all() <= MiB, 15_000, `all logs within --log-total 1MiB (now ${all()} bytes)`);
    // The newest output of each process (its current file) survives; older rotated files went.
    for (const n of ['w1', 'w2', 'w3']) expect(readLog(fx.stateDir, n)).toMatch(/done\n$/);
    c.close();
  });

  it('log flags are validated and name the flag', async () => {
    const r = await runCli(['agent', '--listen', '127.0.0.1:0', '--state', path.join(fx.dir, 'other'), '--insecure-loopback', '--log-total', '5']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('--log-total');
    const k = await runCli(['agent', '--listen', '127.0.0.1:0', '--state', path.join(fx.dir, 'other'), '--insecure-loopback', '--log-keep', '-1']);
    expect(k.code).toBe(1);
    expect(k.stderr).toContain('--log-keep');
  });
});

describe('logs across an agent SIGKILL (issue 17: the agent writes a process guest host\'s logs, outside its wall)', () => {
  const fx = useAgentFixture();
  const mtimes = (stateDir: string, name: string) => logFiles(stateDir, name).map((f) => [f.name, f.size, statSync(path.join(stateDir, 'logs', f.name)).mtimeMs]);

  it('a flooding guest waits on its output while no agent reads it, runs on (same pid), and its log goes on rotating after the restart', async () => {
    let agent = await fx.start({ args: ['--log-max-bytes', '256KiB', '--log-keep', '1'] });
    let c = await fx.connect(agent);
    await c.start(await uploadSpec(c, 'flood', guest('flood')));
    const pid = (await c.status()).processes.find((p) => p.name === 'flood')?.pid;
    expect(pid).toBeTypeOf('number');
    await waitFor(() => logFiles(fx.stateDir, 'flood').length === 2, 20_000, 'the log to rotate');
    await fx.kill(agent, 'SIGKILL');
    // Nothing writes the files while no agent runs: the guest host cannot (they are not in its
    // wall), and it blocks once its pipe is full.
    await new Promise((r) => setTimeout(r, 500));
    const still = mtimes(fx.stateDir, 'flood');
    await new Promise((r) => setTimeout(r, 1000));
    expect(mtimes(fx.stateDir, 'flood')).toEqual(still);
    expect(alive(pid as number)).toBe(true);
    agent = await fx.start({ args: ['--log-max-bytes', '256KiB', '--log-keep', '1'] });
    c = await fx.connect(agent);
    const st = (await c.status()).processes.find((p) => p.name === 'flood');
    expect([st?.pid, st?.restarts]).toEqual([pid, 0]);
    await waitFor(() => JSON.stringify(mtimes(fx.stateDir, 'flood')) !== JSON.stringify(still), 20_000, 'the re-attached agent to write the log again');
    for (const f of logFiles(fx.stateDir, 'flood')) expect(f.size, f.name).toBeLessThanOrEqual(256 * 1024);
    await c.stop('flood', 500);
  });
});
