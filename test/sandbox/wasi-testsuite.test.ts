import { chmodSync, cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { spawnGuest } from '@lowcloud/sandbox';
import { repoRoot } from '../helpers/cli.js';

/**
 * The official WASI conformance tests (wasm32-wasip1), run through lowcloud's guest host exactly as
 * the suite's README says: a fresh copy of the test's folder (u+w) holds the preopened dirs, args,
 * env and dirs come from the test's .json, and exit code and stdout are compared. The suite is data
 * beside the repository (../shared/wasi-testsuite), never copied into it; LOWCLOUD_WASI_TESTSUITE
 * points elsewhere.
 */
/** `shared/wasi-testsuite` beside the repository or beside one of its parents (a worktree's). */
function findSuite(): string {
  for (let dir = repoRoot; ; dir = path.dirname(dir)) {
    const candidate = path.join(path.dirname(dir), 'shared', 'wasi-testsuite');
    if (existsSync(candidate) || path.dirname(dir) === dir) return existsSync(candidate) ? candidate : path.join(repoRoot, '..', 'shared', 'wasi-testsuite');
  }
}
const suite = process.env.LOWCLOUD_WASI_TESTSUITE ?? findSuite();
const work = mkdtempSync(path.join(tmpdir(), 'lowcloud-wasi-testsuite-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

interface Spec {
  args?: string[];
  env?: Record<string, string>;
  dirs?: string[];
  exit_code?: number;
  stdout?: string;
}

const folders = ['assemblyscript', 'c', 'rust'].map((lang) => ({ lang, dir: path.join(suite, 'tests', lang, 'testsuite', 'wasm32-wasip1') }));
const cases = suite !== 'none' && existsSync(suite)
  ? folders.flatMap(({ lang, dir }) =>
      readdirSync(dir)
        .filter((f) => f.endsWith('.wasm'))
        .sort()
        .map((f) => ({ lang, dir, name: f.slice(0, -'.wasm'.length) })),
    )
  : [];

// Two guests at a time: the machine's cores are shared with the rest of the suite.
let running = 0;
const queue: (() => void)[] = [];
async function slot<T>(f: () => Promise<T>): Promise<T> {
  if (running >= 2) await new Promise<void>((r) => queue.push(r));
  running++;
  try {
    return await f();
  } finally {
    running--;
    queue.shift()?.();
  }
}

function writableCopy(from: string, to: string): void {
  cpSync(from, to, { recursive: true });
  chmodSync(to, 0o755);
  for (const e of readdirSync(to, { recursive: true, withFileTypes: true })) chmodSync(path.join(e.parentPath, e.name), e.isDirectory() ? 0o755 : 0o644);
}

async function run(c: (typeof cases)[number]): Promise<{ code: number | string; stdout: string; stderr: string }> {
  const json = path.join(c.dir, `${c.name}.json`);
  const spec = (existsSync(json) ? JSON.parse(readFileSync(json, 'utf8')) : {}) as Spec;
  const cwd = path.join(work, `${c.lang}-${c.name}`);
  writableCopy(c.dir, cwd);
  const g = await spawnGuest({
    wasm: path.join(cwd, `${c.name}.wasm`),
    args: spec.args ?? [],
    env: spec.env ?? {},
    dirs: (spec.dirs ?? []).map((d) => ({ host: path.join(cwd, d), guest: d })),
    config: [],
    grants: { network: { listen: [], connect: [] } },
    stdout: 'pipe',
    stderr: 'pipe',
    cacheDir: path.join(work, 'cache'),
    // The runtime layer only: these tests are about WASI semantics, and cgroups per guest cost ~0.5 s.
  }, { kernel: false });
  let stdout = '';
  let stderr = '';
  g.child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  g.child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => void g.stop(1000), 30_000);
  const exit = await g.exited;
  clearTimeout(timer);
  await new Promise((r) => setImmediate(r));
  return { code: exit.kind === 'exit' ? exit.code : exit.kind, stdout, stderr };
}

describe('the WASI conformance suite (wasm32-wasip1) through lowcloud', () => {
  // LOWCLOUD_WASI_TESTSUITE=none: declared absent (.ci/run sets it, saying so loudly, only when no
  // shared/ folder stands beside the clone); any other absence is a failure.
  it.skipIf(suite === 'none')('is present beside the repository', () => {
    if (!existsSync(suite)) throw new Error(`the WASI test suite is absent: expected it at ${suite} (the shared/ folder beside the repository), or set LOWCLOUD_WASI_TESTSUITE`);
    expect(cases.length).toBe(72);
  });

  for (const c of cases) {
    it.concurrent(`${c.lang}/${c.name}`, async () => {
      const json = path.join(c.dir, `${c.name}.json`);
      const spec = (existsSync(json) ? JSON.parse(readFileSync(json, 'utf8')) : {}) as Spec;
      const r = await slot(() => run(c));
      expect({ code: r.code, ...(spec.stdout === undefined ? {} : { stdout: r.stdout }) }, r.stderr).toEqual({ code: spec.exit_code ?? 0, ...(spec.stdout === undefined ? {} : { stdout: spec.stdout }) });
    });
  }
});
