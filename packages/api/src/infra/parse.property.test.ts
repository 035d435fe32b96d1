import { existsSync, readdirSync, readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseDocument } from 'yaml';
import { InvalidInputError } from '../errors.js';
import { readBlock } from './block-read.js';
import { fastLoad } from './fast-load.js';
import { parseInfra, parseWithPositions } from './parse.js';

/*
 * The fast paths (block-read.ts by hand, then js-yaml, for valid files) and the `yaml` path
 * (positions, for errors) must read every file the same way: the same document, or the same errors. Files are generated with the
 * YAML that reads differently between libraries and YAML versions.
 */

/** Scalars that YAML 1.1, YAML 1.2 and the two libraries are known to read differently. */
const TRICKY = ['yes', 'no', 'on', 'off', 'y', 'n', 'True', 'TRUE', 'tRue', 'false', '~', 'null', 'Null', 'nULL', '', '0o17', '017', '0x1F', '0b101', '1_000', '+12', '-0', '1.2.3', '1.10', '1.', '.5', '1e3', '1E+3', '1e400', '.inf', '-.Inf', '.NaN', '2001-12-14', '2001-12-14T21:59:43.10-05:00', '12:30:00', '64MiB', '64MB', '64', 'a b', 'x#y', 'it\'s', 'a: b', '- x', '[x]', '{x}', '<<', '*x', '&x', '!x', '%x', '@x', '"q"', "'q'", 'é', '\\t'];

const plain = fc.constantFrom(...TRICKY);

/** Mostly a value the schema takes, sometimes anything: both valid and invalid files are cases. */
const mostly = <T>(valid: fc.Arbitrary<T>, other: fc.Arbitrary<T>) => fc.oneof({ arbitrary: valid, weight: 24 }, { arbitrary: other, weight: 1 });

/** One scalar written plain, single-quoted or double-quoted (a plain write of an unsafe string may be a syntax error: that is a case too). */
const scalar = (values: fc.Arbitrary<string>) =>
  fc.tuple(values, fc.constantFrom('plain', 'single', 'double')).map(([v, style]) =>
    style === 'plain' ? v : style === 'single' ? `'${v.replace(/'/g, "''")}'` : JSON.stringify(v),
  );

const name = mostly(fc.constantFrom('m1', 'm2', 'web', 'db', 'a.b', '1', '01', 'true'), fc.constantFrom('null', '~', 'Web', '<<', '"web"', "'db'"));
const size = scalar(mostly(fc.constantFrom('64MiB', '1GiB', '512KB', '1.5GiB', '64 MiB'), fc.constantFrom('64', 'big', '0o17')));
const number = mostly(fc.constantFrom('0.5', '1', '2', '.5', '1e0', '0x2', '0o1', '1.', '+2'), fc.constantFrom('-1', '1_0', 'one', '~', 'yes', '.inf', '"1"'));
const port = mostly(fc.constantFrom('80', '7000', '0x50', '0o17', '+443'), fc.constantFrom('65536', '1_000', '"80"', '~', '80.0'));

/** `compact`: a block sequence at its key's indentation (a block mapping otherwise). */
type Style = 'block' | 'flow' | 'compact';

/** A mapping written in block or flow style at an indentation. */
function mapping(pairs: [string, string | Node][], style: Style, indent: string): string {
  if (style === 'flow' || pairs.length === 0) return `{ ${pairs.map(([k, v]) => `${k}: ${typeof v === 'string' ? v : flow(v)}`).join(', ')} }`;
  return pairs.map(([k, v]) => (typeof v === 'string' ? `\n${indent}${k}: ${v}` : `\n${indent}${k}:${render(v, `${indent}  `)}`)).join('');
}

interface Node {
  kind: 'map' | 'seq';
  style: Style;
  items: [string, string | Node][];
  anchor?: string;
}

function flow(n: Node): string {
  const anchor = n.anchor === undefined ? '' : `&${n.anchor} `;
  if (n.kind === 'seq') return `${anchor}[${n.items.map(([, v]) => (typeof v === 'string' ? v : flow(v))).join(', ')}]`;
  return `${anchor}${mapping(n.items, 'flow', '')}`;
}

function render(n: Node, indent: string): string {
  const anchor = n.anchor === undefined ? '' : ` &${n.anchor}`;
  if (n.style === 'flow' || n.items.length === 0) return ` ${flow(n)}`;
  const dash = n.style === 'compact' ? indent.slice(2) : indent;
  if (n.kind === 'seq') return `${anchor}${n.items.map(([, v]) => `\n${dash}- ${typeof v === 'string' ? v : flow(v)}`).join('')}`;
  return `${anchor}${mapping(n.items, 'block', indent)}`;
}

const style = fc.constantFrom<Style>('block', 'block', 'block', 'compact', 'flow');
const node = (kind: Node['kind'], items: fc.Arbitrary<[string, string | Node][]>, anchor = false): fc.Arbitrary<Node> =>
  fc.record({ kind: fc.constant(kind), style, items, ...(anchor ? { anchor: fc.option(fc.constant('g'), { nil: undefined }) } : {}) }) as fc.Arbitrary<Node>;

const entries = (arbs: Record<string, fc.Arbitrary<string | Node>>) =>
  fc.subarray(Object.keys(arbs)).chain((keys) =>
    keys.length === 0 ? fc.constant([] as [string, string | Node][]) : fc.tuple(...keys.map((k) => (arbs[k] as fc.Arbitrary<string | Node>).map((v): [string, string | Node] => [k, v]))),
  );

const grants = node(
  'map',
  entries({
    cpu: number,
    memory: size,
    disk: size,
    network: node('map', entries({ listen: node('seq', fc.array(port, { maxLength: 2 }).map((ps) => ps.map((p): [string, string] => ['', p]))), udp: mostly(fc.constantFrom('true', 'false', 'True', 'FALSE'), scalar(plain)), connect: node('seq', fc.array(scalar(mostly(fc.constantFrom('db:5432', '10.0.0.0/8:53', '[::1]:80'), fc.constantFrom('x', '1.2.3.4'))), { maxLength: 2 }).map((cs) => cs.map((c): [string, string] => ['', c]))) })),
  }),
  true,
);

const processEntry = (machines: string[]) =>
  node(
    'map',
    fc.tuple(
      entries({
        machine: mostly(fc.constantFrom(...machines), fc.constantFrom('nowhere', '~', 'yes')),
        binary: scalar(mostly(fc.constantFrom('app.wasm', 'bin/app.wasm'), fc.constantFrom('yes', '0o17', '~'))),
        args: node('seq', fc.array(mostly(scalar(fc.constantFrom('--port', '7000', 'a b', 'x#y', '2001-12-14')).map((a) => (/^[0-9]/.test(a) ? `"${a}"` : a)), scalar(plain)), { maxLength: 3 }).map((as) => as.map((a): [string, string] => ['', a]))),
        env: node('map', fc.array(fc.tuple(scalar(mostly(fc.constantFrom('LOG', 'MODE', 'on', '1', 'Y'), fc.constantFrom('null', '~', '<<', ''))), mostly(fc.constantFrom('info', '"yes"', "'0o17'", '"1.10"', 'debug mode', '""'), scalar(plain))), { maxLength: 3 })),
        config: node('map', fc.array(fc.tuple(scalar(mostly(fc.constantFrom('/etc/a.toml', '/x y', '/etc/yes'), fc.constantFrom('etc/b', '~'))), scalar(fc.constantFrom('a.toml', '2001-12-14'))), { maxLength: 2 })),
        grants,
        restart: scalar(mostly(fc.constantFrom('always', 'on-failure', 'never'), fc.constantFrom('no', 'yes', 'Never'))),
      }),
      mostly(fc.constant('none'), fc.constantFrom('alias', 'merge', 'duplicate')),
    ).map(([items, extra]): [string, string | Node][] => {
      if (extra === 'alias') return [...items, ['grants', '*g']];
      if (extra === 'merge') return [['<<', '*g'], ...items];
      if (extra === 'duplicate' && items.length > 0) return [...items, items[0] as [string, string | Node]];
      return items;
    }),
  );

/** Changes that may break the file's YAML (a tab, an unclosed bracket, a wrongly indented line), or only add comments and blank lines. */
const damage = fc.oneof(
  { arbitrary: fc.constant('none'), weight: 16 },
  { arbitrary: fc.constantFrom('comment', 'comment-line', 'blank'), weight: 8 },
  { arbitrary: fc.constantFrom('tab', 'bracket', 'dedent', 'quote', 'directive', 'document', 'bom', 'crlf', 'marker-end', 'nul'), weight: 1 },
);

const infraFile = fc
  .tuple(fc.uniqueArray(name, { minLength: 1, maxLength: 3 }), mostly(fc.constantFrom('1', '0x1', '1.0', '+1', '0o1'), fc.constantFrom('2', '"1"', '~', 'yes')), style, style, mostly(fc.constant(false), fc.constant(true)), damage, fc.nat(1000))
  .chain(([machines, version, mStyle, pStyle, duplicateMachine, dmg, where]) =>
    fc.tuple(
      fc.tuple(...machines.map(() => node('map', entries({ agent: scalar(mostly(fc.constant('local'), fc.constantFrom('ws://127.0.0.1:7000', 'wss://x:1', 'yes'))), region: mostly(scalar(fc.constantFrom('eu', 'us-1', 'yes', 'no', '2001-12-14', '1.2.3')).map((r) => (r === 'yes' || r === 'no' || /^[0-9]/.test(r) ? `'${r}'` : r)), scalar(plain)), capacity: node('map', entries({ cpu: number, memory: size })) })))),
      fc.uniqueArray(name, { maxLength: 3 }).chain((ps) => fc.tuple(fc.constant(ps), fc.tuple(...ps.map(() => processEntry(machines))))),
    ).map(([ms, [ps, specs]]) => {
      const machineItems: [string, Node][] = machines.map((m, i) => [m, ms[i] as Node]);
      if (duplicateMachine) machineItems.push(machineItems[0] as [string, Node]);
      let text = `version: ${version}\nmachines:${render({ kind: 'map', style: mStyle, items: machineItems }, '  ')}\n`;
      if (ps.length > 0) text += `processes:${render({ kind: 'map', style: pStyle, items: ps.map((p, i) => [p, specs[i] as Node]) }, '  ')}\n`;
      return breakText(text, dmg, where);
    }),
  );

function breakText(text: string, how: string, where: number): string {
  const lines = text.split('\n');
  const i = 1 + (where % Math.max(1, lines.length - 2));
  const line = lines[i] ?? '';
  switch (how) {
    case 'tab':
      lines[i] = line.replace(/^ {2}/, '\t');
      break;
    case 'bracket':
      lines[i] = `${line} [`;
      break;
    case 'dedent':
      lines[i] = line.trimStart();
      break;
    case 'quote':
      lines[i] = `${line} "x`;
      break;
    case 'directive':
      return `%YAML 1.1\n---\n${text}`;
    case 'document':
      return `${text}---\nversion: 1\n`;
    case 'bom':
      return `\ufeff${text}`;
    case 'comment':
      lines[i] = `${line} # note: x`;
      break;
    case 'comment-line':
      lines.splice(i, 0, `${' '.repeat(where % 7)}# note`);
      break;
    case 'blank':
      lines.splice(i, 0, ' '.repeat(where % 5));
      break;
    case 'marker-end':
      return `${text}...\n`;
    case 'nul':
      lines[i] = `${line}\u0000`;
      break;
    case 'crlf':
      return text.replace(/\n/g, '\r\n');
  }
  return lines.join('\n');
}

type Outcome = { value: unknown } | { errors: unknown } | { thrown: string };


/**
 * Where the block reader takes `text`, it reads what the yaml library reads (and that library
 * finds no error): true. False where the reader leaves the file to the libraries.
 */
function blockAgrees(text: string): boolean {
  const b = readBlock(text);
  if (b === null) return false;
  const doc = parseDocument(text, { uniqueKeys: false });
  expect(doc.errors).toEqual([]);
  expect(b.value).toEqual(doc.toJS({ maxAliasCount: 100 }));
  return true;
}
function outcome(read: () => { value: unknown }): Outcome {
  try {
    return { value: read().value };
  } catch (err) {
    if (err instanceof InvalidInputError) return { errors: err.diagnostics };
    return { thrown: err instanceof Error ? err.message : String(err) };
  }
}

describe('parseInfra: the fast path and the yaml path agree', () => {
  it('on generated infra files (anchors, merge keys, flow and block styles, quoting, version-like numbers, yes/no, timestamps, duplicate keys, broken YAML)', () => {
    let fast = 0;
    let valid = 0;
    let block = 0;
    fc.assert(
      fc.property(infraFile, (text) => {
        const both = outcome(() => parseInfra(text, 'infra.yaml'));
        const slow = outcome(() => parseWithPositions(text, 'infra.yaml'));
        expect(both).toEqual(slow);
        if ('value' in slow) valid++;
        // Whatever the hand-written reader reads, `yaml` reads the same, without a problem.
        if (blockAgrees(text)) block++;
        const f = fastLoad(text);
        if (f !== null && 'value' in slow) {
          fast++;
          expect(f.value).toEqual(slow.value);
          // Positions for later diagnostics come from the yaml path, the same as without the fast path.
          const at = (p: { at: (path: string[], m: string) => unknown }) => p.at(['processes', 'web', 'machine'], 'x');
          expect(at(parseInfra(text, 'infra.yaml'))).toEqual(at(parseWithPositions(text, 'infra.yaml')));
        }
      }),
      { numRuns: Number(process.env.PARSE_RUNS ?? 600) },
    );
    if (process.env.PARSE_RUNS !== undefined) console.log({ valid, fast, block });
    // The property is only worth something if both paths were exercised. Of 600 generated files
    // 20-42 are valid (and read by the fast path) from run to run: a bound of 20 failed CI once at
    // exactly 20 (2026-12-06, Node.js 24); what matters is that some were.
    expect(valid).toBeGreaterThan(5);
    expect(fast).toBeGreaterThan(5);
    expect(block).toBeGreaterThan(0);
  });

  it('on block-style files, the style block-read.ts reads by hand (tricky scalars in every place, comments, blank lines, both sequence indentations)', () => {
    let block = 0;
    const line = fc.tuple(scalar(plain), fc.constantFrom('', ' # c', '   ', '#c'));
    const proc = fc.record({
      name,
      machine: line,
      args: fc.array(line, { maxLength: 3 }),
      compact: fc.boolean(),
      env: fc.array(fc.tuple(scalar(mostly(fc.constantFrom('LOG', 'MODE'), plain)), line), { maxLength: 2 }),
      listen: fc.array(scalar(port), { maxLength: 2 }),
      gap: fc.constantFrom('', '\n', '\n    # note\n', '\n  \n'),
    });
    const file = fc.array(proc, { minLength: 1, maxLength: 3 }).map((ps) => {
      let text = 'version: 1\nmachines:\n  m1:\n    agent: local\nprocesses:\n';
      for (const p of ps) {
        const dash = p.compact ? '    ' : '      ';
        text += `  ${p.name}:\n    machine: ${p.machine.join('')}${p.gap}\n    binary: app.wasm\n    args:${p.args.length === 0 ? ' []' : ''}\n`;
        text += p.args.map((a) => `${dash}- ${a.join('')}\n`).join('');
        text += `    env:${p.env.length === 0 ? ' {}' : ''}\n${p.env.map(([k, v]) => `      ${k}: ${v.join('')}\n`).join('')}`;
        text += `    grants:\n      network:\n        listen: [${p.listen.join(', ')}]\n`;
      }
      return text;
    });
    fc.assert(
      fc.property(file, (text) => {
        expect(outcome(() => parseInfra(text, 'infra.yaml'))).toEqual(outcome(() => parseWithPositions(text, 'infra.yaml')));
        if (blockAgrees(text)) block++;
      }),
      { numRuns: Number(process.env.PARSE_RUNS ?? 600) },
    );
    expect(block).toBeGreaterThan(30);
  });

  it('reads a scalar written again, in any style and place, as the yaml library does (block-read.ts remembers the scalars it has read)', () => {
    const styles = TRICKY.flatMap((v) => [v, `'${v.replace(/'/g, "''")}'`, JSON.stringify(v)]);
    // Scalars the reader takes alone, as a value and in a flow sequence: a file of them is one it reads.
    const values = styles.filter((v) => readBlock(`x: ${v}\n`) !== null);
    const items = styles.filter((v) => readBlock(`x: [${v}]\n`) !== null);
    const keys = styles.filter((v) => readBlock(`${v}: x\n`) !== null);
    let block = 0;
    const row = fc.record({ x: fc.constantFrom(...values), y: fc.constantFrom(...values), list: fc.array(fc.constantFrom(...items), { maxLength: 3 }), key: fc.option(fc.constantFrom(...keys), { nil: undefined }) });
    const file = fc.array(row, { minLength: 1, maxLength: 12 }).map((rows) =>
      rows.map((r, i) => `k${i}:\n  a: ${r.x}\n  b: ${r.y}\n  l: [${r.list.join(', ')}]\n  s:\n    - ${r.x}\n    - ${r.y}\n${r.key === undefined ? '' : `  ${r.key}: ${r.x}\n`}`).join(''),
    );
    fc.assert(
      fc.property(file, (text) => {
        if (blockAgrees(text)) block++;
      }),
      { numRuns: Number(process.env.PARSE_RUNS ?? 300) },
    );
    expect(block).toBeGreaterThan(100);
  });

  it('reads one-line flow collections, nested in any way, as the yaml library does, or leaves them to it (the style of the examples: `grants: { memory: 64MiB, network: { listen: [7000] } }`)', () => {
    const styles = TRICKY.flatMap((v) => [v, `'${v.replace(/'/g, "''")}'`, JSON.stringify(v)]);
    const sp = fc.constantFrom('', ' ', '  ');
    const key = fc.oneof(fc.constantFrom('a', 'memory', '/etc/a.toml', 'LOG', 'x-y', 'a.b'), fc.constantFrom(...styles));
    const { item, map } = fc.letrec<{ item: string; seq: string; map: string }>((tie) => ({
      item: fc.oneof({ depthSize: 'small', withCrossShrink: true }, { arbitrary: fc.constantFrom(...styles, 'db:5432', '10.0.0.0/8:53', 'lowcloud user'), weight: 3 }, tie('seq'), tie('map')),
      seq: fc.tuple(sp, fc.array(fc.tuple(tie('item'), sp), { maxLength: 3 })).map(([a, xs]) => `[${a}${xs.map(([x, b]) => `${x}${b}`).join(',' + ' ')}]`),
      map: fc.tuple(sp, fc.array(fc.tuple(key, fc.constantFrom(': ', ':  ', ':', ' : '), tie('item'), sp), { maxLength: 3 })).map(([a, ps]) => `{${a}${ps.map(([k, c, v, b]) => `${k}${c}${v}${b}`).join(', ')}}`),
    }));
    let block = 0;
    let maps = 0;
    const file = fc.array(fc.tuple(fc.oneof(item, map), fc.constantFrom('', ' # c', '  ')), { minLength: 1, maxLength: 4 }).map((vs) => vs.map(([v, c], i) => (i % 2 === 0 ? `k${i}: ${v}${c}\n` : `k${i}:\n  - ${v}${c}\n`)).join(''));
    fc.assert(
      fc.property(file, (text) => {
        if (!blockAgrees(text)) return;
        block++;
        if (/\{[^}]/.test(text)) maps++;
      }),
      { numRuns: Number(process.env.PARSE_RUNS ?? 600) },
    );
    if (process.env.PARSE_RUNS !== undefined) console.log({ flowBlock: block, maps });
    // Many are files the reader takes, a flow mapping with pairs in them too (not only the ones it leaves to the libraries).
    expect(block).toBeGreaterThan(100);
    expect(maps).toBeGreaterThan(50);
  });

  it('reads a block written again as the yaml library does, wherever it ends (block-read.ts reads a repeated block once and gives its value again)', () => {
    // A few blocks a fleet repeats (grants, env), in both styles; each process takes one, sometimes
    // with a line more inside it or a comment or blank line around it, so that one block's text is
    // another's beginning, a block ends at the end of the file, at a comment indented less, or at a
    // sequence's item at its key's indentation.
    const leaf = fc.constantFrom('cpu: 0.5', 'memory: 64MiB', 'memory: 64MiB # c', 'disk: 1GiB', "memory: '64MiB'", 'cpu: 1');
    const network = fc.constantFrom(
      '  network:\n    listen: [80]',
      '  network:\n    listen:\n    - 80\n    - 81',
      '  network:\n    listen:\n      - 80',
      '  network: { listen: [80], connect: ["db:5432"] }',
      '  network:\n    connect:\n    - db:5432\n    # c\n    - db:5433',
    );
    const between = fc.constantFrom('', '', '\n', '\n# c', '\n  # c', '\n      \n', '\n        # c');
    const grants = fc.tuple(fc.array(leaf, { minLength: 1, maxLength: 3 }), fc.option(network, { nil: undefined }), between, fc.nat(4)).map(([ls, net, gap, at]) => {
      const keys = new Set<string>();
      const lines = ls.filter((l) => !keys.has(l.split(':')[0] as string) && keys.add(l.split(':')[0] as string)).map((l) => `  ${l}`);
      if (net !== undefined) lines.push(net);
      // The blank line or comment inside the block or after it (a comment indented less than the block is inside it).
      const k = at % (lines.length + 1);
      if (k < lines.length) (lines as string[])[k] += gap;
      return { lines, gap: k < lines.length ? '' : gap };
    });
    const file = fc
      .tuple(fc.array(grants, { minLength: 1, maxLength: 3 }), fc.array(fc.tuple(fc.nat(2), fc.constantFrom('none', 'extra', 'env', 'flow', 'last')), { minLength: 2, maxLength: 8 }), fc.constantFrom('\n', ''))
      .map(([pool, ps, eof]) => {
        let text = 'version: 1\nmachines:\n  m1:\n    agent: local\n    capacity:\n      cpu: 1\nprocesses:\n';
        ps.forEach(([g, how], i) => {
          const b = pool[g % pool.length] as { lines: string[]; gap: string };
          const inner = how === 'extra' ? [...b.lines, '  restart: never'] : b.lines;
          text += `  p${i}:\n    machine: m1\n    grants:\n${inner.map((l) => l.replace(/^/gm, '    ')).join('\n')}${b.gap}\n`;
          if (how === 'env') text += '    env:\n      LOG: info\n';
          if (how === 'flow') text += '    env: { LOG: info }\n';
          if (how === 'last') text += '    args:\n    - x\n';
        });
        return text.slice(0, text.length - 1) + eof;
      });
    let block = 0;
    let shared = 0;
    fc.assert(
      fc.property(file, (text) => {
        expect(outcome(() => parseInfra(text, 'infra.yaml'))).toEqual(outcome(() => parseWithPositions(text, 'infra.yaml')));
        if (!blockAgrees(text)) return;
        block++;
        const ps = Object.values((readBlock(text)?.value as { processes: Record<string, { grants: unknown }> }).processes);
        if (ps.some((p, i) => ps.slice(0, i).some((q) => q.grants === p.grants))) shared++;
      }),
      { numRuns: Number(process.env.PARSE_RUNS ?? 600) },
    );
    if (process.env.PARSE_RUNS !== undefined) console.log({ repeatedBlock: block, shared });
    // Most files are read by hand, and in many a block was read once for two processes.
    expect(block).toBeGreaterThan(300);
    expect(shared).toBeGreaterThan(100);
  });

  it('gives a repeated block once, and stops looking blocks up under a key whose blocks do not repeat', () => {
    const proc = (i: number, listen: number) => `  p${i}:\n    machine: m1\n    args:\n      - --id\n      - "${i}"\n    grants:\n      memory: 64MiB\n      network:\n        listen: [${listen}]\n    env: { LOG: info }\n`;
    let text = 'version: 1\nmachines:\n  m1:\n    agent: local\nprocesses:\n';
    for (let i = 0; i < 200; i++) text += proc(i, 7000 + (i % 3));
    expect(blockAgrees(text)).toBe(true);
    const ps = (readBlock(text)?.value as { processes: Record<string, { args: unknown; grants: { network: unknown }; env: unknown }> }).processes;
    expect(ps.p3?.grants).toBe(ps.p0?.grants);
    expect(ps.p4?.grants).not.toBe(ps.p3?.grants);
    expect(ps.p4?.grants.network).not.toBe(ps.p3?.grants.network);
    expect(ps.p199?.env).toBe(ps.p0?.env);
    expect(ps.p199?.args).toEqual(['--id', '199']);
    // `args` never repeated in 200 processes: no longer looked up, so two equal lists after that are two lists.
    const again = `${text}  q1:\n    machine: m1\n    args:\n      - same\n  q2:\n    machine: m1\n    args:\n      - same\n`;
    expect(blockAgrees(again)).toBe(true);
    const qs = (readBlock(again)?.value as { processes: Record<string, { args: unknown }> }).processes;
    expect(qs.q2?.args).toEqual(qs.q1?.args);
    expect(qs.q2?.args).not.toBe(qs.q1?.args);
    // A block over 16 KiB is read each time, not looked up.
    const big = `    env:\n${Array.from({ length: 800 }, (_, i) => `      K${i}: value-${i}\n`).join('')}`;
    const large = `version: 1\nmachines:\n  m1:\n    agent: local\nprocesses:\n  a:\n    machine: m1\n${big}  b:\n    machine: m1\n${big}`;
    expect(big.length).toBeGreaterThan(16 * 1024);
    expect(blockAgrees(large)).toBe(true);
    const ls = (readBlock(large)?.value as { processes: Record<string, { env: unknown }> }).processes;
    expect(ls.b?.env).not.toBe(ls.a?.env);
  });

  it('leaves a flow collection nested deeper than an infra file goes to the libraries, without recursing into it', () => {
    const nested = (n: number) => `x: ${'{a: ['.repeat(n)}1${']}'.repeat(n)}\n`;
    expect(blockAgrees(nested(4))).toBe(true);
    expect(readBlock(nested(50))).toBeNull();
    // A line no stack could recurse through: given up at the depth limit, not a RangeError.
    expect(readBlock(`x: ${'['.repeat(1_000_000)}${']'.repeat(1_000_000)}\n`)).toBeNull();
  });

  it('leaves block mappings nested deeper than an infra file goes to the libraries, which report them', () => {
    const nested = (n: number) => `version: 1\nprocesses:\n  p:\n    env:\n${Array.from({ length: n }, (_, i) => `${' '.repeat(6 + i)}k${i}:\n`).join('')}${' '.repeat(6 + n)}x: 1\n`;
    expect(blockAgrees(nested(8))).toBe(true);
    expect(readBlock(nested(40))).toBeNull();
    // Thousands deep: given up, not a RangeError; the yaml path says where (its own limit).
    expect(readBlock(nested(3000))).toBeNull();
    const deep = outcome(() => parseInfra(nested(3000), 'infra.yaml'));
    expect(deep).toEqual({ errors: expect.arrayContaining([expect.objectContaining({ file: 'infra.yaml', line: expect.any(Number) as number })]) as unknown });
  });

  it("reads the examples' infra files by hand, as the yaml library does", () => {
    const examples = new URL('../../../../examples/', import.meta.url);
    for (const name of readdirSync(examples)) {
      const file = new URL(`${name}/infra.yaml`, examples);
      if (!existsSync(file)) continue;
      expect(blockAgrees(readFileSync(file, 'utf8')), name).toBe(true);
    }
  });

  it('reads tricky scalars, keys and block scalars as the yaml library does, or leaves them to it', () => {
    let read = 0;
    let block = 0;
    for (const v of TRICKY) {
      for (const text of [
        `x: ${v}\n`,
        `${v}: x\n`,
        `x: [${v}]\n`,
        `x: [a, ${v}, b]\n`,
        `x: {${v}: 1}\n`,
        `x: |\n  ${v}\n`,
        `x: >-\n  ${v}\n\n  ${v}\n`,
        `x:\n  - ${v}\n`,
        `x:\n- ${v}\ny: 1\n`,
        `x: ${v} # c\n`,
        `x:\n  ${v}: 1\n  y: ${v}\n`,
        `x: ${v}\n  y\n`,
        `x: "${v}"\n`,
        `x: '${v}'\n`,
        `"${v}": 1\n`,
        `x: [${v}:1]\n`,
        `x: {a: ${v}}\n`,
        `x: { a: ${v}, b: [${v}], c: { d: ${v} } }\n`,
        `x: [{a: ${v}}, [${v}]]\n`,
        `x: {k: [${v}], b: {}, ${v}: 1}\n`,
        `x:\n  - {a: ${v} }\n`,
        `---\nx: ${v}\n`,
        `--- # c\nx: [${v}]\n`,
        `---\nx: ${v}\n---\n`,
        `---x\nx: ${v}\n`,
      ]) {
        const f = fastLoad(text);
        const doc = parseDocument(text, { uniqueKeys: false });
        if (readBlock(text) !== null) {
          block++;
          expect(doc.errors, text).toEqual([]);
        }
        if (f === null || doc.errors.length > 0) continue;
        read++;
        expect(f.value, text).toEqual(doc.toJS({ maxAliasCount: 100 }));
      }
    }
    expect(read).toBeGreaterThan(300);
    expect(block).toBeGreaterThan(200);
  });
});
