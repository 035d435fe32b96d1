import { createHash, randomUUID } from 'node:crypto';
import { cpSync, lstatSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { canonicalJson, sha256Hex } from '@lowcloud/api';
import { runCli } from '../helpers/cli.js';
import { useAgentFixture, uploadSpec, type RunningAgent } from '../helpers/agent.js';
import { guest } from '../helpers/guests.js';

/**
 * The audit log is tamper-evident against anyone without the agent's key: each line is chained and
 * signed, and a signed head records how long the log is. Each attack below is detected both by
 * `lowcloud agent --verify-audit` (offline) and by the agent when it starts, which keeps the broken
 * log aside and starts a new segment instead of appending to it.
 */
const fx = useAgentFixture();
let lines: string[] = [];
/** audit.head as it was before the last call: the head a crash between a line and its head leaves. */
let olderHead = '';

type Entry = Record<string, unknown> & { seq: number; prev: string; hash: string; sig: string };
const rehash = (e: Entry): Entry => {
  const { hash: _h, sig: _s, ...rest } = e;
  return { ...e, hash: createHash('sha256').update(canonicalJson(rest)).digest('hex') };
};

/**
 * A copy of a live state directory: its files, not the FIFOs of running guest hosts (their output
 * pipes in run/, which Node.js's cpSync refuses to copy and which hold nothing to verify).
 */
const copyState = (from: string, to: string) => cpSync(from, to, { recursive: true, filter: (src) => !lstatSync(src).isFIFO() });

/** A copy of the agent's state directory with its audit log replaced by `text`. */
function tampered(name: string, text: string): string {
  const dir = path.join(fx.dir, name);
  copyState(fx.stateDir, dir);
  writeFileSync(path.join(dir, 'audit.log'), text);
  return dir;
}

const verify = (stateDir: string) => runCli(['agent', '--state', stateDir, '--verify-audit']);

beforeAll(async () => {
  const agent = await fx.start();
  const c = await fx.connect(agent);
  await c.start(await uploadSpec(c, 'a', guest('sleeper')));
  await c.stop('a', 500);
  // A partial upload: the first of three chunks only.
  const blob = Buffer.alloc(3000, 7);
  await c.call({ type: 'put-blob', id: randomUUID(), digest: sha256Hex(blob), size: blob.length, offset: 0, data: blob.subarray(0, 1000).toString('base64') });
  await c.start(await uploadSpec(c, 'b', guest('sleeper'), { args: ['x'] }));
  olderHead = readFileSync(path.join(fx.stateDir, 'audit.head'), 'utf8');
  await c.stop('b', 500);
  c.close();
  await fx.kill(agent, 'SIGTERM');
  lines = readFileSync(path.join(fx.stateDir, 'audit.log'), 'utf8').trimEnd().split('\n');
});

describe('audit log: signed chain and head, checked offline and at start', () => {
  it('an intact log verifies; every put-blob chunk is in it, partial ones too', async () => {
    const r = await verify(fx.stateDir);
    expect(r.stdout).toContain(`audit log ok: ${lines.length} entries`);
    expect(r.code).toBe(0);
    const entries = lines.map((l) => JSON.parse(l) as Entry);
    expect(entries[0]).toMatchObject({ seq: 1, type: 'segment' });
    expect(entries.filter((e) => e.type === 'start').map((e) => e.process)).toEqual(['a', 'b']);
    expect(entries.some((e) => e.type === 'put-blob' && (e.blob as { complete: boolean; offset: number; bytes: number }).complete === false)).toBe(true);
    expect(entries.find((e) => e.type === 'put-blob' && (e.blob as { complete: boolean }).complete === false)?.blob).toMatchObject({ offset: 0, bytes: 1000 });
  });

  const attacks: Record<string, { text: () => string; line: (n: number) => number; says: string }> = {
    // Change what a start recorded, then recompute that hash and every later one: a valid chain.
    'an edited line, re-hashed with the whole chain after it': {
      text: () => {
        const es = lines.map((l) => JSON.parse(l) as Entry);
        const i = es.findIndex((e) => e.type === 'start');
        (es[i] as Entry).process = 'someone-else';
        for (let k = i; k < es.length; k++) {
          if (k > i) (es[k] as Entry).prev = (es[k - 1] as Entry).hash;
          es[k] = rehash(es[k] as Entry);
        }
        return `${es.map((e) => JSON.stringify(e)).join('\n')}\n`;
      },
      line: () => lines.findIndex((l) => l.includes('"type":"start"')) + 1,
      says: 'signature does not verify',
    },
    'a truncated tail (the last two lines removed)': {
      text: () => `${lines.slice(0, -2).join('\n')}\n`,
      line: (n) => n - 1,
      says: `truncated: the signed head records`,
    },
    'a removed first line': {
      text: () => `${lines.slice(1).join('\n')}\n`,
      line: () => 1,
      says: 'lines were removed from the start',
    },
  };

  for (const [name, attack] of Object.entries(attacks)) {
    it(`${name}: --verify-audit exits 1 naming the line; the agent reports it at start and starts a new segment`, async () => {
      const dir = tampered(name.replace(/\W+/g, '-'), attack.text());
      const line = attack.line(lines.length);
      const v = await verify(dir);
      expect(v.code).toBe(1);
      expect(v.stderr).toContain(`audit.log:${line}: `);
      expect(v.stderr).toContain(attack.says);

      let agent: RunningAgent | null = null;
      try {
        agent = await fx.start({ stateDir: dir });
        expect(agent.output()).toContain('AUDIT LOG BROKEN');
        expect(agent.output()).toContain(`line ${line}: `);
        const kept = readdirSync(dir).filter((f) => f.startsWith('audit.log.broken-') && !f.endsWith('.head'));
        expect(kept).toHaveLength(1);
        expect(readFileSync(path.join(dir, kept[0] as string), 'utf8')).toBe(attack.text());
        // The new segment says why it exists, and the agent goes on recording in it.
        const c = await fx.connect(agent);
        await c.putBlob(sha256Hex('after'), Buffer.from('after'));
        c.close();
        const fresh = readFileSync(path.join(dir, 'audit.log'), 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as Entry);
        expect(fresh[0]).toMatchObject({ seq: 1, type: 'segment', previous: kept[0] });
        expect(String(fresh[0]?.reason)).toContain(attack.says);
        expect(fresh.at(-1)).toMatchObject({ type: 'put-blob' });
      } finally {
        if (agent !== null) await fx.kill(agent);
      }
      const after = await verify(dir);
      expect(after.code).toBe(0);
      expect(after.stdout).toContain('earlier segments that did not verify, kept for inspection: audit.log.broken-');
    });
  }

  it('a crash between a line and its head: the signed line past the head is accepted and sealed at start; a forged one is not', async () => {
    const dir = tampered('crash', `${lines.join('\n')}\n`);
    writeFileSync(path.join(dir, 'audit.head'), olderHead);
    const v = await verify(dir);
    expect(v.code).toBe(0);
    expect(v.stdout).toContain('1 line(s) past the head');
    const agent = await fx.start({ stateDir: dir });
    try {
      expect(agent.output()).toContain('past the signed head');
      expect(agent.output()).not.toContain('AUDIT LOG BROKEN');
    } finally {
      await fx.kill(agent);
    }
    expect((await verify(dir)).stdout).toContain(`audit log ok: ${lines.length} entries`);

    // The same position, but a line someone appended: chained and hashed right, not signed by the agent.
    const last = JSON.parse(lines.at(-1) as string) as Entry;
    const forged = rehash({ ...last, seq: last.seq + 1, prev: last.hash, process: 'forged' });
    const f = tampered('forged', `${[...lines, JSON.stringify(forged)].join('\n')}\n`);
    const fv = await verify(f);
    expect(fv.code).toBe(1);
    expect(fv.stderr).toContain(`audit.log:${lines.length + 1}: its signature does not verify`);
  });

  it('audit.log and audit.head deleted together: state.json remembers the chain; --verify-audit exits 1, the agent says so at start and in status', async () => {
    const dir = tampered('deleted', '');
    rmSync(path.join(dir, 'audit.log'));
    rmSync(path.join(dir, 'audit.head'));
    const recorded = (JSON.parse(readFileSync(path.join(dir, 'state.json'), 'utf8')) as { audit: { seq: number } }).audit;
    expect(recorded.seq).toBeGreaterThan(1);
    const v = await verify(dir);
    expect(v.code).toBe(1);
    expect(v.stderr).toContain(`audit.log and audit.head are missing (deleted?), but state.json records that the log reached line ${recorded.seq}`);

    let agent = await fx.start({ stateDir: dir });
    try {
      expect(agent.output()).toContain('AUDIT LOG LOST');
      const c = await fx.connect(agent);
      const audit = (await c.status()).audit;
      c.close();
      expect(audit?.notice).toContain('audit.log and audit.head are missing');
      expect(audit?.notice).toContain('--verify-audit');
    } finally {
      await fx.kill(agent);
    }
    // The new segment is now the chain state.json records: the next start finds nothing lost, and status still says why the segment began.
    expect((await verify(dir)).code).toBe(0);
    agent = await fx.start({ stateDir: dir });
    try {
      expect(agent.output()).not.toContain('AUDIT LOG');
      const c = await fx.connect(agent);
      expect((await c.status()).audit?.notice).toContain('audit.log and audit.head are missing');
      c.close();
    } finally {
      await fx.kill(agent);
    }
    const fresh = readFileSync(path.join(dir, 'audit.log'), 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as Entry);
    expect(fresh[0]).toMatchObject({ seq: 1, type: 'segment' });
    expect(String(fresh[0]?.reason)).toContain(`reached line ${recorded.seq}`);
  });

  it('another valid log of the same agent put in its place (a fresh one, signed with its key): the line state.json records is not in it', async () => {
    const dir = tampered('replaced', '');
    const other = path.join(fx.dir, 'other-state');
    copyState(fx.stateDir, other);
    for (const f of ['state.json', 'audit.log', 'audit.head']) rmSync(path.join(other, f));
    await fx.kill(await fx.start({ stateDir: other }));
    for (const f of ['audit.log', 'audit.head']) cpSync(path.join(other, f), path.join(dir, f));
    const v = await verify(dir);
    expect(v.code).toBe(1);
    expect(v.stderr).toMatch(/audit.log \(\d+ entries\) is not the log state.json records: it reached line \d+/);
  });
});
