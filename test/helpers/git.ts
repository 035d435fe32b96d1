import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { killGuestsUnder } from './guests.js';

/** A throwaway git repository; `commit` records the working tree and returns the commit id. */
export function tempGitRepo(): { dir: string; git(...args: string[]): string; commit(message: string): string; remove(): void } {
  const dir = mkdtempSync(path.join(tmpdir(), 'lowcloud-git-'));
  const git = (...args: string[]) =>
    execFileSync('git', args, {
      cwd: dir,
      env: { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@example.invalid', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@example.invalid' },
    })
      .toString()
      .trim();
  git('init', '-q', '-b', 'main');
  return {
    dir,
    git,
    commit(message: string) {
      git('add', '-A');
      git('commit', '-q', '-m', message);
      return git('rev-parse', 'HEAD');
    },
    remove() {
      // `lowcloud up` keeps local agents' state (and their guests' records) under .lowcloud/.
      killGuestsUnder(dir);
      // Their launchers write exit records as they end: retried where one lands mid-removal.
      rmSync(dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 });
    },
  };
}
