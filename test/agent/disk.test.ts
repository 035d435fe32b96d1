import { closeSync, existsSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { useAgentFixture, uploadSpec, type RunningAgent } from '../helpers/agent.js';
import { guest } from '../helpers/guests.js';
import { machineFacts } from '../helpers/machine-facts.js';

const fx = useAgentFixture();
let agent: RunningAgent;
beforeAll(async () => {
  agent = await fx.start();
});

const mounted = (dir: string) => readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.split(' ')[4] === dir);

/** Write until the filesystem says no; returns how far it got and the error code. */
function fill(file: string, limit: number): { bytes: number; code: string | null } {
  const fd = openSync(file, 'w');
  const chunk = Buffer.alloc(64 * 1024, 1);
  let bytes = 0;
  try {
    while (bytes < limit) bytes += writeSync(fd, chunk);
    return { bytes, code: null };
  } catch (err) {
    return { bytes, code: (err as NodeJS.ErrnoException).code ?? null };
  } finally {
    closeSync(fd);
  }
}

describe('disk grant, kernel layer (an ext4 image loop-mounted over the data directory)', () => {
  it('holds for any writer, keeps the data across restarts, and is unmounted when the process stops', async (ctx) => {
    const facts = machineFacts();
    if (!facts.diskImages) {
      ctx.skip(`kernel disk layer unavailable here: ${facts.why.diskImages}; the runtime layer is tested in test/sandbox`);
      return;
    }
    const c = await fx.connect(agent);
    const spec = await uploadSpec(c, 'keeper', guest('sleeper'), { grants: { disk: 2 ** 20, network: { listen: [], connect: [] } } });
    await c.start(spec);
    const dir = path.join(fx.stateDir, 'data', 'keeper');
    const image = `${dir}.ext4`;
    const st = (await c.status()).processes.find((p) => p.name === 'keeper');
    expect(st?.enforcement?.disk?.[0]).toEqual({ level: 'kernel', mechanism: `ext4 image of ${statSync(image).size} bytes loop-mounted at the directory (ENOSPC past it)` });
    expect(mounted(dir)).toBe(true);
    // Mount options (field 6 of mountinfo): a guest can plant no setuid binary, device or executable in it.
    const opts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' ')[4] === dir)?.split(' ')[5]?.split(',') ?? [];
    expect(opts).toEqual(expect.arrayContaining(['nosuid', 'nodev', 'noexec']));

    // A writer that knows nothing of the runtime quota (this test process) still stops at the image.
    const r = fill(path.join(dir, 'big'), 8 * 2 ** 20);
    expect(r.code).toBe('ENOSPC');
    expect(r.bytes).toBeGreaterThanOrEqual(2 ** 20);
    expect(r.bytes).toBeLessThanOrEqual(statSync(image).size);

    await c.stop('keeper');
    expect(mounted(dir)).toBe(false);
    expect(existsSync(path.join(dir, 'big'))).toBe(false); // the data is in the image, not the directory
    await c.start(spec);
    expect(mounted(dir)).toBe(true);
    expect(statSync(path.join(dir, 'big')).size).toBe(r.bytes);
    await c.stop('keeper');
    c.close();
  });
});
