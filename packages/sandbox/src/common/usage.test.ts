import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ENTRY_BYTES, usageOf, usageOfAsync } from './usage.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'lowcloud-usage-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe('the disk rule, walked synchronously (the quota) and asynchronously (status)', () => {
  it('5,000 one-byte files in 10 directories, a hard link, a symlink to /: both walks give 4096 per entry plus each distinct file once', async () => {
    const dir = fs.mkdtempSync(path.join(root, 'many-'));
    for (let d = 0; d < 10; d++) {
      fs.mkdirSync(path.join(dir, `d${d}`));
      for (let f = 0; f < 500; f++) fs.writeFileSync(path.join(dir, `d${d}`, `f${f}`), 'x');
    }
    fs.writeFileSync(path.join(dir, 'big'), Buffer.alloc(100_000));
    fs.linkSync(path.join(dir, 'big'), path.join(dir, 'd3', 'big-link'));
    fs.symlinkSync('/', path.join(dir, 'root-link'));
    // 10 directories + 5,000 files + big + its link + the symlink; bytes: 5,000 + 100,000 (once).
    const expected = (10 + 5000 + 1 + 1 + 1) * ENTRY_BYTES + 5000 + 100_000;
    expect(usageOf(dir)).toBe(expected);
    expect(await usageOfAsync(dir)).toBe(expected);
  });

  it('an empty or missing directory costs nothing', async () => {
    const dir = fs.mkdtempSync(path.join(root, 'empty-'));
    expect([usageOf(dir), await usageOfAsync(dir), await usageOfAsync(path.join(dir, 'missing'))]).toEqual([0, 0, 0]);
  });
});
