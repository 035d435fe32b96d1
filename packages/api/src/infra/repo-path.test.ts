import { describe, expect, it } from 'vitest';
import { resolveRepoPath, type Entry } from './repo-path.js';

/** A repository as a table of entries (what both real sources answer per path). */
const tree = (t: Record<string, Entry>) => (p: string) => Promise.resolve(t[p] ?? ({ kind: 'missing' } as const));
const repo = tree({
  app: { kind: 'dir' },
  'app/x.toml': { kind: 'file' },
  'app/loop': { kind: 'symlink', target: 'loop' },
  'app/up': { kind: 'symlink', target: '..' },
  'app/fifo': { kind: 'other', what: 'a FIFO' },
});

describe('resolveRepoPath', () => {
  it('follows relative links physically and keeps inside the root', async () => {
    expect(await resolveRepoPath('app', 'up/app/x.toml', repo)).toEqual({ kind: 'file', path: 'app/x.toml' });
    expect(await resolveRepoPath('app', 'up/../x.toml', repo)).toMatchObject({ kind: 'refused', reason: expect.stringContaining('outside the repository (through the symlink app/up -> ..)') });
  });
  it('refuses a symlink loop, a FIFO, an absolute path; a file used as a directory is missing', async () => {
    expect(await resolveRepoPath('app', 'loop', repo)).toMatchObject({ kind: 'refused', reason: expect.stringContaining('more than 40 symlinks') });
    expect(await resolveRepoPath('app', 'fifo', repo)).toMatchObject({ kind: 'refused', reason: expect.stringContaining('not a regular file') });
    expect(await resolveRepoPath('app', '/etc/passwd', repo)).toMatchObject({ kind: 'refused' });
    expect(await resolveRepoPath('app', 'x.toml/..', repo)).toMatchObject({ kind: 'missing' });
    expect(await resolveRepoPath('', 'app', repo)).toMatchObject({ kind: 'missing', reason: expect.stringContaining('directory') });
  });
});
