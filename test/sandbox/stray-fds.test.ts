import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { jspiNode, type GuestOptions } from '@lowcloud/sandbox';
import { repoRoot } from '../helpers/cli.js';
import { alive, guestOptions, waitFor } from '../helpers/guests.js';

/**
 * A descriptor the agent inherited without close-on-exec (from a service manager, a CI runner, a
 * shell) is passed on by Node.js's spawn and by bubblewrap to every process below it. In a guest
 * host, a directory descriptor from outside the wall would let escaped code `openat` past the
 * mount namespace. The guest host closes every inherited descriptor but its own before a guest runs.
 */
const work = mkdtempSync(path.join(tmpdir(), 'lowcloud-strayfd-'));
const pids = new Set<number>();
afterAll(() => {
  for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
  rmSync(work, { recursive: true, force: true });
});

const MiB = 2 ** 20;
/** What a process's descriptors point at. */
const openFiles = (pid: number | 'self') =>
  readdirSync(`/proc/${pid}/fd`).flatMap((fd) => {
    try {
      return [readlinkSync(`/proc/${pid}/fd/${fd}`)];
    } catch {
      return [];
    }
  });

describe('descriptors the process starting guests inherited by accident', () => {
  it('reach neither a guest host of its own nor a shared one, though the starter holds them', { timeout: 60_000 }, async () => {
    const secretDir = path.join(work, 'outside-the-wall');
    mkdirSync(secretDir);
    const secretFile = path.join(secretDir, 'key');
    writeFileSync(secretFile, 'not for guests\n');
    const out = (name: string) => ({ file: path.join(work, `${name}.log`), maxBytes: 4096, keep: 1 });
    const opts: GuestOptions[] = [guestOptions('sleeper', { grants: { memory: 16 * MiB, network: { listen: [], connect: [] } }, stdout: out('own'), stderr: out('own'), cacheDir: path.join(work, 'cache') })];
    const withShared = jspiNode() !== null;
    if (withShared) opts.push(guestOptions('sleeper', { isolation: 'shared', grants: { memory: 8 * MiB, network: { listen: [], connect: [] } }, stdout: out('shared'), stderr: out('shared'), cacheDir: path.join(work, 'cache') }));
    const script = `import { spawnGuest } from '@lowcloud/sandbox';
const hs = [];
for (const o of ${JSON.stringify(opts)}) hs.push(await spawnGuest(o));
process.stdout.write(JSON.stringify(hs.map((h) => h.pid)) + '\\n');
setInterval(() => undefined, 1000);`;
    // As a service manager or a shell would leave them: a directory and a file at fds 30 and 31,
    // opened without close-on-exec before Node.js starts. (Node.js marks descriptors 0-16
    // close-on-exec as it starts, so those never reach a child; bash, since dash opens no
    // descriptor past 9.)
    const starter = spawn('/bin/bash', ['-c', 'exec 30<"$1" 31<"$2"; exec "$0" --input-type=module -e "$3"', process.execPath, secretDir, secretFile, script], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      const hosts = await new Promise<number[]>((resolve, reject) => {
        starter.stdout.once('data', (b: Buffer) => resolve(JSON.parse(b.toString()) as number[]));
        starter.once('exit', (code) => reject(new Error(`the starter exited (${code})`)));
      });
      for (const p of hosts) pids.add(p);
      expect(hosts).toHaveLength(withShared ? 2 : 1);
      // The starter holds them, without close-on-exec (so they were there to be passed on)...
      expect(openFiles(starter.pid as number)).toEqual(expect.arrayContaining([secretDir, secretFile]));
      for (const fd of [30, 31]) expect(Number.parseInt(/^flags:\s*([0-7]+)$/m.exec(readFileSync(`/proc/${starter.pid}/fdinfo/${fd}`, 'utf8'))?.[1] ?? '2000000', 8) & 0o2000000).toBe(0);
      // Once their guests run (each sleeper says `ready`), their hosts are past their start-up.
      const ready = (name: string) => {
        try {
          return readFileSync(path.join(work, `${name}.log`), 'utf8') === 'ready\n';
        } catch {
          return false;
        }
      };
      await waitFor(() => ready('own') && (!withShared || ready('shared')), 20_000, 'the guests logged ready');
      // ...and no guest host does.
      for (const pid of hosts) {
        const theirs = openFiles(pid);
        expect(theirs.length).toBeGreaterThan(0);
        expect(theirs.filter((f) => f.startsWith(secretDir))).toEqual([]);
      }
    } finally {
      starter.kill('SIGKILL');
    }
  });
});
