import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvalidInputError } from '../errors.js';
import type { FileRead, FileSource } from './file-source.js';
import { readBlock } from './block-read.js';
import { parseInfra, parseWithPositions } from './parse.js';
import { resolveInfra, resolveInfraDigests } from './resolve.js';

/*
 * resolveInfraDigests (what `plan` keeps of a big side: names, machines, digests, a spec built again
 * when asked for) must agree with resolveInfra on every file: the same processes in the same
 * order, the same digests, sealed fields and specs, or the same errors. Files are generated with
 * what changes resolution: unsorted and array-index names, unknown machines, missing and non-wasm
 * binaries, connect targets and `${name:port}` / `${name:digest}` references, sealed values good
 * and bad, capacity overruns and listen ports shared across machines.
 */

const KEY_BYTES = Buffer.alloc(32, 7);
const KEY = `ed25519:${KEY_BYTES.toString('base64')}`;
const OTHER_KEY = `ed25519:${Buffer.alloc(32, 9).toString('base64')}`;
const sealedTo = (key: Buffer) => `sealed:v1:${Buffer.concat([key, Buffer.alloc(48, 1)]).toString('base64url')}`;

const files: Record<string, Uint8Array> = {
  'bin/a.wasm': Buffer.from('\0asm\x01\0\0\0a'),
  'bin/b.wasm': Buffer.from('\0asm\x01\0\0\0b'),
  'bin/text.wasm': Buffer.from('not wasm'),
  'c/a.toml': Buffer.from('a = 1\n'),
  'c/b.toml': Buffer.from('b = 2\n'),
  'c/sealed.toml': Buffer.from(sealedTo(KEY_BYTES)),
  'c/bad-sealed.toml': Buffer.from('sealed:v1:!!'),
};

const source: FileSource = {
  label: 'test files',
  read: async (p): Promise<FileRead> => {
    if (p.startsWith('/')) return { kind: 'refused', reason: 'an absolute path' };
    const bytes = files[p];
    return bytes === undefined ? { kind: 'missing', reason: 'no such file' } : { kind: 'file', bytes };
  },
};

const machineNames = ['m1', 'm2', '7', '10', 'a.b'];

/** Mostly a value that resolves, sometimes one that does not: both valid and invalid files are cases. */
const mostly = <T>(valid: fc.Arbitrary<T>, other: fc.Arbitrary<T>) => fc.oneof({ arbitrary: valid, weight: 40 }, { arbitrary: other, weight: 1 });
const processNames = ['web', 'db', '2', '10', 'a-b', 'z', 'api.x', 'q'];

const machine = fc.record(
  {
    agent: mostly(fc.constantFrom('local', 'wss://h.example:1'), fc.constantFrom('ws://127.0.0.1:4000', 'ws://h.example:1')),
    key: mostly(fc.constantFrom(KEY, OTHER_KEY), fc.constant('ed25519:AAAA')),
    address: fc.constantFrom('10.0.0.1', '10.0.0.2', 'fd00::5'),
    capacity: fc.record({ cpu: mostly(fc.constant(64), fc.constantFrom(1, 4)), memory: mostly(fc.constant('1TiB'), fc.constantFrom('128MiB', '8GiB')), disk: fc.constantFrom('1TiB', '1GiB') }, { requiredKeys: [] }),
  },
  { requiredKeys: ['agent'] },
);

const arg = mostly(fc.constantFrom('--x', '7', '${db:5432}', '${web:80}', '${web:digest}', '${db:digest}'), fc.constantFrom('${nope:1}', '${z:9}'));
const envValue = mostly(fc.constantFrom('v', 'w', '${db:5432}', '${web:digest}', sealedTo(KEY_BYTES)), fc.constantFrom(sealedTo(Buffer.alloc(32, 9)), 'sealed:junk', 'sealed:v2:x'));
const processEntry = fc.record(
  {
    machine: mostly(fc.constant('m1'), fc.constantFrom(...machineNames, 'nope')),
    binary: mostly(fc.constantFrom('bin/a.wasm', 'bin/b.wasm'), fc.constantFrom('bin/missing.wasm', 'bin/text.wasm', '/abs.wasm')),
    args: fc.array(arg, { maxLength: 3 }),
    env: fc.dictionary(fc.constantFrom('K', 'L', '__proto__', '1'), envValue, { maxKeys: 2 }),
    config: fc.dictionary(mostly(fc.constantFrom('/etc/a', '/etc/b', '/etc/c'), fc.constant('rel')), mostly(fc.constantFrom('c/a.toml', 'c/b.toml', 'c/sealed.toml'), fc.constantFrom('c/bad-sealed.toml', 'c/missing.toml')), { maxKeys: 2 }),
    grants: fc.record(
      {
        cpu: fc.constantFrom(0.5, 2),
        memory: fc.constantFrom('64MiB', '1GiB'),
        disk: fc.constantFrom('64MiB', '1GiB'),
        gpu: fc.record({ memory: fc.constantFrom('1GiB') }),
        network: fc.record(
          {
            // Shared ports now and then: which process a conflict names depends on the order processes are checked in.
            listen: fc.oneof({ arbitrary: fc.uniqueArray(fc.integer({ min: 1000, max: 60000 }), { maxLength: 2 }), weight: 8 }, { arbitrary: fc.constantFrom([80], [5432], [443, 80]), weight: 2 }),
            connect: fc.array(mostly(fc.constantFrom('db:5432', 'web:80', 'x.example:1', '10.0.0.0/8:53'), fc.constantFrom('nope:1', 'bad')), { maxLength: 2 }),
            udp: fc.boolean(),
          },
          { requiredKeys: ['listen'] },
        ),
      },
      { requiredKeys: ['network'] },
    ),
    restart: fc.constantFrom('always', 'never', 'on-failure'),
    isolation: fc.constantFrom('shared', 'process'),
    allowUnwalled: fc.boolean(),
  },
  { requiredKeys: ['machine', 'binary'] },
);

const infra = fc.record({
  machines: fc.uniqueArray(fc.tuple(fc.constantFrom(...machineNames), machine), { maxLength: 3, selector: ([n]) => n }),
  processes: fc.uniqueArray(fc.tuple(fc.constantFrom(...processNames), processEntry), { maxLength: 6, selector: ([n]) => n }),
  /** Mostly: web listens on 80 and db on 5432, as most references expect. */
  named: mostly(fc.constant(true), fc.constant(false)),
  m1Key: mostly(fc.constant(KEY), fc.constant(undefined)),
});

/** The file's text: m1 always there, after the others (machines, too, come in the file's order). */
function infraText({ machines, processes, named, m1Key }: { machines: [string, object][]; processes: [string, object][]; named: boolean; m1Key: string | undefined }): string {
  const listed = Object.fromEntries(processes) as Record<string, { grants?: { network?: object } }>;
  if (named) {
    for (const [name, port] of [['web', 80], ['db', 5432]] as const) {
      const p = listed[name] ?? (listed[name] = { machine: 'm1', binary: 'bin/a.wasm' } as never);
      p.grants = { ...p.grants, network: { ...p.grants?.network, listen: [port] } };
    }
  }
  return JSON.stringify({ version: 1, machines: Object.fromEntries([...machines, ['m1', { agent: 'local', ...(m1Key === undefined ? {} : { key: m1Key }) }]]), processes: listed });
}

/** What either way gives: the processes in their order, each with its digest and spec, or the errors. */
async function outcome(f: () => Promise<unknown>): Promise<unknown> {
  try {
    return { ok: await f() };
  } catch (err) {
    if (err instanceof InvalidInputError) return { errors: err.diagnostics };
    throw err;
  }
}

describe('resolveInfraDigests agrees with resolveInfra', () => {
  it('the same processes, digests, sealed fields and specs, or the same errors', async () => {
    await fc.assert(
      fc.asyncProperty(infra, async (generated) => {
        const text = infraText(generated);
        const full = await outcome(async () => {
          const r = await resolveInfra(parseInfra(text, 'infra.yaml'), source);
          const list = Object.values(r.processes);
          return {
            machines: r.machines,
            blobs: r.blobs,
            names: list.map((p) => p.name),
            machineOf: list.map((p) => p.machine),
            digests: list.map((p) => p.digest),
            sealed: Object.fromEntries(list.flatMap((p, i) => (p.sealed.length > 0 ? [[i, p.sealed]] : []))),
            specs: list.map((p) => p.spec),
          };
        });
        const lean = await outcome(async () => {
          const r = await resolveInfraDigests(parseInfra(text, 'infra.yaml'), source);
          return { machines: r.machines, blobs: r.blobs, names: r.names, machineOf: r.machineOf, digests: r.digests, sealed: r.sealed, specs: r.names.map((_, i) => r.spec(i)) };
        });
        expect(lean).toEqual(full);
        // Key order too: the plan document is written in it.
        expect(JSON.stringify(lean)).toBe(JSON.stringify(full));
      }),
      { numRuns: 400 },
    );
  });
});

/**
 * The generated file in block style, each scalar double-quoted (the block reader takes that; `${`
 * in a plain scalar it leaves to the libraries), args a block sequence, lists in flow style.
 */
function blockText(doc: { machines: Record<string, object>; processes: Record<string, object> }): string {
  const scalar = (v: unknown) => (typeof v === 'string' ? JSON.stringify(v) : String(v));
  const write = (v: unknown, indent: string): string => {
    if (Array.isArray(v)) return v.length === 0 || indent.length > 6 ? ` [${v.map(scalar).join(', ')}]` : v.map((x) => `\n${indent}- ${scalar(x)}`).join('');
    if (v !== null && typeof v === 'object') {
      const entries = Object.entries(v);
      return entries.length === 0 ? ' {}' : entries.map(([k, x]) => `\n${indent}${JSON.stringify(k)}:${write(x, `${indent}  `)}`).join('');
    }
    return ` ${scalar(v)}`;
  };
  return `version: 1${write({ machines: doc.machines, processes: doc.processes }, '')}\n`;
}

describe('a block the file repeats is resolved once', () => {
  it('gives the processes of one block one resolved grants, env and config; not an env with a reference', async () => {
    const proc = (name: string, env: string) =>
      `  ${name}:\n    machine: m1\n    binary: bin/a.wasm\n    env:\n      K: ${env}\n    config:\n      /etc/a: c/a.toml\n    grants:\n      memory: 64MiB\n      network:\n        connect: [x.example:1]\n`;
    const text = `version: 1\nmachines:\n  m1:\n    agent: local\nprocesses:\n  db:\n    machine: m1\n    binary: bin/a.wasm\n    grants: { network: { listen: [5432] } }\n${proc('p1', 'v')}${proc('p2', 'v')}${proc('r1', '"${db:5432}"')}${proc('r2', '"${db:5432}"')}`;
    const { processes: ps } = await resolveInfra(parseInfra(text, 'infra.yaml'), source);
    expect(ps.p2?.spec.grants).toBe(ps.p1?.spec.grants);
    expect(ps.p2?.spec.env).toBe(ps.p1?.spec.env);
    expect(ps.p2?.spec.config).toBe(ps.p1?.spec.config);
    // A reference is resolved for each process (it may report per process): equal values, two records.
    expect(ps.r2?.spec.env).toEqual(ps.r1?.spec.env);
    expect(ps.r2?.spec.env).not.toBe(ps.r1?.spec.env);
    expect(ps.r1?.spec.env.K).toBe('127.0.0.1:5432');
  });

  // block-read.ts gives a repeated block as one object, and resolve.ts resolves its grants, env and
  // config once (and writes their JSON once): every process must still get what it would get
  // alone, its own problems (a connect target it cannot reach, a sealed value its machine cannot
  // open) and its own sealed fields, as when the file is read without sharing (the yaml path).
  it('gives each process the spec, digest, sealed fields and problems it gets when nothing is shared', async () => {
    let shared = 0;
    // Entries whose blocks have problems as often as not: a connect target or reference naming no
    // process, a sealed value for another machine.
    const pooled = fc.record(
      {
        machine: fc.constant('m1'),
        binary: fc.constantFrom('bin/a.wasm', 'bin/b.wasm'),
        env: fc.dictionary(fc.constantFrom('K', 'L'), fc.constantFrom('v', '${db:5432}', '${nope:1}', '${web:digest}', sealedTo(KEY_BYTES), sealedTo(Buffer.alloc(32, 9))), { maxKeys: 2 }),
        config: fc.dictionary(fc.constantFrom('/etc/a', '/etc/b'), fc.constantFrom('c/a.toml', 'c/sealed.toml', 'c/missing.toml'), { maxKeys: 2 }),
        grants: fc.record({ memory: fc.constantFrom('64MiB', '1GiB'), network: fc.record({ listen: fc.constantFrom([], [7000]), connect: fc.array(fc.constantFrom('db:5432', 'x.example:1', 'nope:1', 'web:81'), { maxLength: 2 }) }) }),
      },
      { requiredKeys: ['machine', 'binary'] },
    );
    const file = fc.record({
      base: infra,
      pool: fc.array(fc.oneof(processEntry, pooled), { minLength: 1, maxLength: 2 }),
      uses: fc.array(fc.tuple(fc.nat(1), fc.constantFrom(...machineNames, 'm1', 'm1')), { minLength: 2, maxLength: 6 }),
    });
    await fc.assert(
      fc.asyncProperty(file, async ({ base, pool, uses }) => {
        const doc = JSON.parse(infraText(base)) as { machines: Record<string, object>; processes: Record<string, object> };
        // Copies of a few entries, some on other machines: equal blocks, written out again.
        uses.forEach(([k, machine], i) => (doc.processes[`r${i}`] = { ...(JSON.parse(JSON.stringify(pool[k % pool.length])) as object), machine }));
        const text = blockText(doc);
        const read = readBlock(text);
        if (read !== null) {
          const grants = Object.values(read.value.processes as Record<string, { grants?: object }>).map((p) => p.grants).filter((g) => g !== undefined);
          if (new Set(grants).size < grants.length) shared++;
        }
        for (const resolve of [resolveInfra, resolveInfraDigests]) {
          const view = async (parse: typeof parseInfra) => {
            const r = await resolve(parse(text, 'infra.yaml'), source);
            return 'names' in r ? { ...r, specs: r.names.map((_, i) => r.spec(i)), spec: undefined } : r;
          };
          const fast = await outcome(() => view(parseInfra));
          expect(fast).toEqual(await outcome(() => view(parseWithPositions)));
          expect(JSON.stringify(fast)).toBe(JSON.stringify(await outcome(() => view(parseWithPositions))));
        }
      }),
      { numRuns: 300 },
    );
    // The case is only worth something where blocks were shared.
    expect(shared).toBeGreaterThan(100);
  });
});
