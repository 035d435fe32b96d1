import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { rotatingFile, rotatingFileOpening } from './rotating-file.js';

const dir = mkdtempSync(path.join(tmpdir(), 'lowcloud-rotating-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const bytes = (s: string) => new TextEncoder().encode(s);
const read = (f: string) => readFileSync(path.join(dir, f), 'utf8');

describe('rotatingFile', () => {
  it('rotates at the cap, keeping whole writes together and `keep` older files', () => {
    const f = rotatingFile(path.join(dir, 'r.log'), 10, 2);
    for (const s of ['aaaa\n', 'bbbb\n', 'cccc\n', 'dddd\n', 'eeee\n']) f.write(bytes(s));
    f.close();
    expect(read('r.log')).toBe('eeee\n');
    expect(read('r.log.1')).toBe('cccc\ndddd\n');
    expect(read('r.log.2')).toBe('aaaa\nbbbb\n');
  });
});

describe('rotatingFileOpening (opened off the thread)', () => {
  it('keeps what is written before it is open, in order, and its close settles once that is in the file', async () => {
    const f = rotatingFileOpening(path.join(dir, 'o.log'), 1 << 20, 1);
    f.write(bytes('one\n'));
    f.write(bytes('two\n'));
    // Closed before the open completed (it cannot have: the open's callback runs on a later turn).
    const closed = f.close();
    f.write(bytes('after close\n'));
    await closed;
    expect(read('o.log')).toBe('one\ntwo\n');
  });

  it('writes straight through once open, and rotates as a rotatingFile does', async () => {
    const f = rotatingFileOpening(path.join(dir, 'p.log'), 10, 1);
    f.write(bytes('aaaa\n'));
    await new Promise((r) => setTimeout(r, 50));
    f.write(bytes('bbbb\n'));
    f.write(bytes('cccc\n'));
    await f.close();
    expect(read('p.log')).toBe('cccc\n');
    expect(read('p.log.1')).toBe('aaaa\nbbbb\n');
  });

  it('drops what is written to a file that cannot be opened, says so, and still settles its close', async () => {
    const f = rotatingFileOpening(path.join(dir, 'no-such-dir', 'x.log'), 1 << 20, 1);
    f.write(bytes('lost\n'));
    expect(f.failed).toBe(false);
    await expect(f.close()).resolves.toBeUndefined();
    expect(f.failed).toBe(true);
  });
});
