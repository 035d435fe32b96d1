import { cpSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { repoRoot, runCli } from '../helpers/cli.js';
import { tempGitRepo } from '../helpers/git.js';
import { waitFor } from '../helpers/guests.js';

/** The expected result, counted here independently of the guests: the rule of the example's README. */
function expected(texts: string[]): string {
  const counts = new Map<string, number>();
  for (const t of texts) for (const w of Buffer.from(t, 'latin1').toString('latin1').toLowerCase().match(/[a-z0-9]+/g) ?? []) counts.set(w, (counts.get(w) ?? 0) + 1);
  const rows = [...counts].sort((a, b) => b[1] - a[1] || Buffer.compare(Buffer.from(a[0]), Buffer.from(b[0])));
  const total = rows.reduce((s, [, c]) => s + c, 0);
  return `${rows.map(([w, c]) => `${w}\t${c}\n`).join('')}total ${total} words, ${rows.length} distinct\n`;
}

describe('examples/wordcount: mappers, reducers and collect as processes on two machines', () => {
  const repo = tempGitRepo();
  afterAll(async () => {
    await runCli(['down', 'infra.yaml'], { cwd: repo.dir });
    repo.remove();
  });
  const logs = (machine: string, name: string) => {
    try {
      return readFileSync(path.join(repo.dir, '.lowcloud/agents', machine, 'state/logs', `${name}.log`), 'utf8');
    } catch {
      return '';
    }
  };
  type Row = { process: string; pid: number | null; restarts: number };
  const status = async () => {
    const r = await runCli(['status', 'infra.yaml', '--json'], { cwd: repo.dir });
    return Object.fromEntries((JSON.parse(r.stdout) as { processes: Row[] }).processes.map((p) => [p.process, p]));
  };

  it('counts exactly: collect logs and writes word<TAB>count by count then word, and the total; every process says done', async () => {
    cpSync(path.join(repoRoot, 'examples/wordcount'), repo.dir, { recursive: true, filter: (src) => path.basename(src) !== '.lowcloud' });
    // Upper case, digits, punctuation, a non-ASCII byte inside a word, ties broken by bytes.
    const a = 'The cat; the CAT, the dog.\nR2D2 met c3po -- r2d2!\nnaïve café b a\n';
    const b = 'Dog dog DOG. zebra apple Apple 42 42 042\n';
    writeFileSync(path.join(repo.dir, 'input/a.txt'), a, 'latin1');
    writeFileSync(path.join(repo.dir, 'input/b.txt'), b, 'latin1');
    repo.commit('wordcount');
    const up = await runCli(['up', 'infra.yaml'], { cwd: repo.dir, timeoutMs: 180_000 });
    expect(up.code).toBe(0);
    expect(up.stdout).toContain('Plan: 5 to start, 0 to stop, 0 to restart.');
    await waitFor(() => logs('eu', 'collect').endsWith('done\n'), 90_000, 'collect to say done');
    const want = expected([a, b]);
    expect(want).toContain('dog\t4\n');
    expect(logs('eu', 'collect')).toBe(`${want}done\n`);
    expect(readFileSync(path.join(repo.dir, '.lowcloud/agents/eu/state/data/collect/result.txt'), 'utf8')).toBe(want);
    for (const [machine, name] of [['eu', 'map-a'], ['us', 'map-b'], ['eu', 'reduce-0'], ['us', 'reduce-1']] as const) {
      await waitFor(() => logs(machine, name).endsWith('done\n'), 30_000, `${name} to say done`);
    }
    const s = await status();
    for (const name of ['map-a', 'map-b', 'reduce-0', 'reduce-1', 'collect']) expect([name, s[name]?.restarts]).toEqual([name, 0]);
    // The two local agents share one cache of admitted binaries: each of the three components was
    // transpiled once between them (agent --cache), and each grant got its copy from that.
    const cache = readdirSync(path.join(repo.dir, '.lowcloud/cache'));
    expect(cache.filter((n) => n.endsWith('.transpiled'))).toHaveLength(3);
    expect(cache.filter((n) => n.endsWith('.component')).length).toBeGreaterThanOrEqual(3);
    for (const m of ['eu', 'us']) expect(existsSync(path.join(repo.dir, '.lowcloud/agents', m, 'state/cache'))).toBe(false);
  });

  it('after one input changes, only that mapper and the processes downstream of it restart, and the result is new', async () => {
    const a = 'apple apple pear\n';
    writeFileSync(path.join(repo.dir, 'input/a.txt'), a);
    repo.commit('new input a');
    const plan = await runCli(['plan', '--base', 'HEAD~1', 'infra.yaml'], { cwd: repo.dir });
    expect(plan.stdout).toContain('Plan: 0 to start, 0 to stop, 4 to restart.');
    expect(plan.stdout).toContain('~ replace-config map-a     config changed (/etc/wordcount/a.txt); restarts once');
    expect(plan.stdout).toContain('+ start          reduce-1  replace: args changed (map-a changed (its digest is named here))');
    expect(plan.stdout).not.toMatch(/(stop|start|replace-config) +map-b /);
    const mapB = readFileSync(path.join(repo.dir, '.lowcloud/agents/us/state/logs/map-b.log'), 'utf8');
    const up = await runCli(['up', 'infra.yaml'], { cwd: repo.dir, timeoutMs: 180_000 });
    expect(up.code).toBe(0);
    const want = expected([a, readFileSync(path.join(repo.dir, 'input/b.txt'), 'latin1')]);
    await waitFor(() => logs('eu', 'collect').endsWith(`${want}done\n`), 90_000, 'collect to print the new result');
    // map-b did not run again: the reducers kept its counts from the first run.
    expect(logs('us', 'map-b')).toBe(mapB);
    expect(logs('eu', 'reduce-0')).toContain('reduce-0: map-b unchanged (kept from an earlier run)');
  });
});
