import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AgentFlagError } from '../errors.js';
import { compileAgentOptions } from '../options.js';
import { secureCacheDir } from './state-dir.js';

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'lowcloud-cache-dir-'));
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

describe('--cache', () => {
  it('is <state>/cache unless given; a given one is resolved to an absolute path', () => {
    const raw = { listen: '127.0.0.1:0', state: '/tmp/x', trust: [], trustRead: [], allowOrigin: [], metricsListen: 'off' };
    expect(compileAgentOptions(raw, {}).cacheDir).toBeUndefined();
    expect(compileAgentOptions({ ...raw, cache: 'rel/cache' }, {}).cacheDir).toBe(path.resolve('rel/cache'));
  });

  it('is made 0700, and a directory anyone else could write or swap is refused, naming the flag', () => {
    const made = path.join(work, 'a/b/cache');
    secureCacheDir(made);
    expect(fs.statSync(made).mode & 0o777).toBe(0o700);
    const open = path.join(work, 'open');
    fs.mkdirSync(open);
    fs.chmodSync(open, 0o777);
    expect(() => secureCacheDir(open)).toThrow(AgentFlagError);
    expect(() => secureCacheDir(open)).toThrow(/--cache .* is writable by others \(mode 777\)/);
    const link = path.join(work, 'link');
    fs.symlinkSync(made, link);
    expect(() => secureCacheDir(link)).toThrow(/is a symbolic link/);
    const file = path.join(work, 'file');
    fs.writeFileSync(file, '');
    expect(() => secureCacheDir(file)).toThrow();
    if (process.getuid?.() === 0) {
      const theirs = path.join(work, 'theirs');
      fs.mkdirSync(theirs, { mode: 0o700 });
      fs.chownSync(theirs, 4321, 4321);
      expect(() => secureCacheDir(theirs)).toThrow(/belongs to uid 4321/);
    }
  });
});
