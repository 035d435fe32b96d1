import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SHARED_CTL, type GuestBoot } from '../common/protocol.js';
import { ProcessLink } from './process-link.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lowcloud-plink-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** All of `text` into a non-blocking FIFO, waiting while its 64 KiB are full (the link reads them). */
async function writeAll(fd: number, text: string): Promise<void> {
  const bytes = Buffer.from(text);
  for (let at = 0; at < bytes.length; ) {
    try {
      at += fs.writeSync(fd, bytes, at);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
      await new Promise((r) => setTimeout(r, 5));
    }
  }
}

describe('a process guest host link (the host side of a restart in place)', () => {
  it('believes only a well-formed `started` for the guest it asked for: garbage, an oversized line and another id change nothing', async () => {
    execFileSync('mkfifo', ['-m', '600', path.join(dir, SHARED_CTL.requests), path.join(dir, SHARED_CTL.replies)]);
    // The host's ends, as guest/main.ts opens them (read-write, non-blocking): here, hostile code in it.
    const rep = fs.openSync(path.join(dir, SHARED_CTL.replies), fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
    const req = fs.openSync(path.join(dir, SHARED_CTL.requests), fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
    const link = ProcessLink.to(dir) as ProcessLink;
    const boot = { id: 'h/new' } as GuestBoot;
    const asked = link.restart(boot, 300);
    await writeAll(rep, `not json\n{"type":"started"}\n{"type":"started","guest":"h/other"}\n${'x'.repeat(70_000)}\n{"type":"exit","guest":"h/old","exit":{"kind":"bogus"},"status":0}\n`);
    expect(await asked).toBe(false);
    expect(link.exitOf('h/old')).toBeNull();
    // The request went out whole, on one line.
    const buf = Buffer.alloc(1 << 16);
    const n = fs.readSync(req, buf);
    expect(JSON.parse(buf.subarray(0, n).toString().trim())).toEqual({ type: 'restart', guest: boot });
    const again = link.restart(boot, 2000);
    await writeAll(rep, '{"type":"exit","guest":"h/old","exit":{"kind":"stopped"},"status":143}\n{"type":"started","guest":"h/new"}\n');
    expect(await again).toBe(true);
    expect(link.exitOf('h/old')).toEqual({ kind: 'stopped' });
    ProcessLink.close(dir);
    fs.closeSync(rep);
    fs.closeSync(req);
  });
});
