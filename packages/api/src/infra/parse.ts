import type { ErrorObject, ValidateFunction } from 'ajv';
import type { Document, LineCounter } from 'yaml';
import { InvalidInputError, type Diagnostic } from '../errors.js';
import { fastLoad } from './fast-load.js';
import { locate } from './locate.js';
import { yamlLib } from './yaml-lib.js';
import { validateInfra } from '../generated/infra-validator.js';
import type { InfraFile } from './types.js';

/** The schema's validator: ajv's code for it, generated at build time (generated/generate.ts). */
const validator = (): ValidateFunction<InfraFile> => validateInfra as unknown as ValidateFunction<InfraFile>;

/** A parsed infra file that still knows where each field came from, for later diagnostics. */
export interface ParsedInfra {
  file: string;
  value: InfraFile;
  /** Diagnostic at a field path, positioned in the source. */
  at(path: readonly (string | number)[], message: string, hint?: string, key?: boolean): Diagnostic;
}

/**
 * Parse and schema-check an infra file. Collects every problem (YAML syntax, duplicate keys,
 * unknown keys, wrong types, bad sizes, unsupported version) and throws them all at once.
 *
 * A valid file is read by the fast path (fast-load.ts); the `yaml` library, which keeps every
 * node's position, reads it only when there is something to report: a problem here, or one found
 * later through `at` (an unknown machine, a missing binary). Both paths give the same document or
 * the same errors (parse.property.test.ts).
 */
export function parseInfra(text: string, file: string): ParsedInfra {
  const fast = fastLoad(text);
  if (fast !== null && isInfraFile(fast.value)) {
    let slow: ParsedInfra | undefined;
    const at: ParsedInfra['at'] = (path, message, hint, key) => (slow ??= parseWithPositions(text, file)).at(path, message, hint, key);
    return { file, value: fast.value, at };
  }
  return parseWithPositions(text, file);
}

function isInfraFile(value: unknown): value is InfraFile {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  const version = (value as Record<string, unknown>).version;
  return (version === undefined || version === 1) && validator()(value);
}

/** The `yaml` path: every node keeps its position, so every problem is reported at its line and column. */
export function parseWithPositions(text: string, file: string): ParsedInfra {
  const { LineCounter, parseDocument } = yamlLib();
  const lines = new LineCounter();
  // yaml's own unique-key check compares every key with every other key of its mapping: for 10,000
  // processes it took 6 of the 10 s a 2.4 MB file took to parse. The walk below is linear.
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: false, prettyErrors: false });
  const at = (path: readonly (string | number)[], message: string, hint?: string, key = false): Diagnostic => {
    const pos = locate(doc, lines, path, key);
    return { file, line: pos.line, column: pos.column, path: path.join('.'), message, ...(hint === undefined ? {} : { hint }) };
  };

  if (doc.errors.length > 0) {
    throw new InvalidInputError(
      doc.errors.map((e) => {
        const p = lines.linePos(e.pos[0]);
        const duplicate = e.code === 'DUPLICATE_KEY';
        return {
          file,
          line: p.line,
          column: p.col,
          path: '',
          message: duplicate ? `duplicate key: ${firstLine(e.message)}` : `YAML syntax error: ${firstLine(e.message)}`,
          hint: duplicate ? 'each key may appear once in a mapping; merge the two entries' : 'check indentation and quoting near here',
        };
      }),
    );
  }

  const duplicates = duplicateKeys(doc.contents, [], lines, file);
  if (duplicates.length > 0) throw new InvalidInputError(duplicates);

  const value: unknown = doc.toJS({ maxAliasCount: 100 });
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new InvalidInputError([{ file, line: 1, column: 1, path: '', message: 'the file must be a mapping with version, machines and processes', hint: 'see schema/infra.schema.json' }]);
  }
  const v = value as Record<string, unknown>;
  if (v.version !== undefined && v.version !== 1) {
    throw new InvalidInputError([at(['version'], `unsupported version ${JSON.stringify(v.version)}`, 'this lowcloud reads version: 1')]);
  }
  const validate = validator();
  if (!validate(value)) throw new InvalidInputError(schemaDiagnostics(validate.errors ?? [], value, doc, at));
  return { file, value, at };
}

/** Every key that appears twice in one mapping, at the second appearance, naming the first. */
function duplicateKeys(node: unknown, path: string[], lines: LineCounter, file: string): Diagnostic[] {
  const { isMap, isScalar, isSeq } = yamlLib();
  const out: Diagnostic[] = [];
  if (isSeq(node)) node.items.forEach((item, i) => out.push(...duplicateKeys(item, [...path, String(i)], lines, file)));
  if (!isMap(node)) return out;
  const seen = new Map<string, number>();
  for (const pair of node.items) {
    const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
    const offset = isScalar(pair.key) ? (pair.key.range?.[0] ?? 0) : 0;
    const first = seen.get(key);
    if (first === undefined) {
      seen.set(key, offset);
    } else {
      const here = lines.linePos(offset);
      const there = lines.linePos(first);
      out.push({
        file,
        line: here.line,
        column: here.col,
        path: [...path, key].join('.'),
        message: `duplicate key "${key}" (first at line ${there.line}, column ${there.col})`,
        hint: 'each key may appear once in a mapping; merge the two entries',
      });
    }
    out.push(...duplicateKeys(pair.value, [...path, key], lines, file));
  }
  return out;
}

function schemaDiagnostics(
  errors: ErrorObject[],
  value: unknown,
  _doc: Document,
  at: ParsedInfra['at'],
): Diagnostic[] {
  const out: Diagnostic[] = [];
  const seen = new Set<string>();
  for (const e of errors) {
    // A failed `propertyNames` also reports the name itself; the name diagnostic is enough.
    if (e.keyword === 'if') continue;
    const path = e.instancePath.split('/').slice(1).map(unescape);
    const d = describe(e, path, value, at);
    if (d === null) continue;
    const k = `${d.line}:${d.column}:${d.message}`;
    if (!seen.has(k)) {
      seen.add(k);
      out.push(d);
    }
  }
  return out.sort((a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0));
}

function describe(e: ErrorObject, path: string[], value: unknown, at: ParsedInfra['at']): Diagnostic | null {
  const field = path[path.length - 1] ?? '';
  switch (e.keyword) {
    case 'additionalProperties': {
      const name = String(e.params.additionalProperty);
      const allowed = Object.keys((e.parentSchema as { properties?: object } | undefined)?.properties ?? {});
      const guess = closest(name, allowed);
      return at([...path, name], `unknown key "${name}"`, guess !== null ? `did you mean "${guess}"?` : `allowed keys: ${allowed.join(', ')}`, true);
    }
    case 'required':
      return at(path, `missing required key "${String(e.params.missingProperty)}"`, requiredHint(String(e.params.missingProperty)));
    case 'propertyNames':
      return null;
    case 'pattern': {
      if (field === 'config' && e.propertyName !== undefined) {
        return at([...path, e.propertyName], `config guest path "${e.propertyName}" is not absolute`, 'write it as the path the guest opens, e.g. /etc/app.toml', true);
      }
      if (e.propertyName !== undefined) {
        return at([...path, e.propertyName], `name "${e.propertyName}" is not allowed`, 'use lowercase letters, digits, ".", "_" and "-", starting with a letter or digit', true);
      }
      const actual = getIn(value, path);
      if (field === 'memory' || field === 'disk') return sizeDiagnostic(path, actual, at);
      if (field === 'agent') return at(path, `"${String(actual)}" is not an agent address`, 'use wss://host:port, ws://127.0.0.1:port (loopback only) or local');
      if (field === 'key') return at(path, `"${String(actual)}" is not an agent key`, 'use ed25519: followed by the base64 of the raw 32-byte public key, as printed by `lowcloud agent`');
      if (path.includes('connect')) return at(path, `"${String(actual)}" is not a connect target`, 'use host:port, ip:port, [v6]:port or cidr:port such as 10.0.0.0/8:5432');
      return at(path, `"${String(actual)}" does not match ${String(e.params.pattern)}`);
    }
    case 'enum':
      return at(path, `${JSON.stringify(getIn(value, path))} is not allowed`, `use one of: ${(e.params.allowedValues as unknown[]).join(', ')}`);
    case 'const':
      return at(path, `unsupported version ${JSON.stringify(getIn(value, path))}`, 'this lowcloud reads version: 1');
    case 'type':
      if ((field === 'memory' || field === 'disk') && typeof getIn(value, path) === 'number') return sizeDiagnostic(path, getIn(value, path), at);
      return at(path, `must be ${article(String(e.params.type))}, got ${typeName(getIn(value, path))}`, typeHint(field));
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
      return at(path, `${JSON.stringify(getIn(value, path))} is out of range (${e.message ?? ''})`, field === 'cpu' ? 'CPU is in cores, e.g. 0.5 or 2' : undefined);
    case 'uniqueItems':
      return at(path, 'has duplicate entries', 'list each entry once');
    default:
      return at(path, e.message ?? 'is invalid');
  }
}

function sizeDiagnostic(path: string[], actual: unknown, at: ParsedInfra['at']): Diagnostic {
  const s = String(actual).trim();
  if (/^\d+(\.\d+)?$/.test(s)) return at(path, `${s} has no unit`, `write ${s}MiB, ${s}KiB or ${s}B`);
  return at(path, `"${s}" is not a size`, 'use a number with B, KB, MB, GB, KiB, MiB or GiB, e.g. 64MiB');
}

function requiredHint(key: string): string | undefined {
  switch (key) {
    case 'version':
      return 'add "version: 1" at the top';
    case 'machines':
      return 'declare at least one machine, e.g. machines: { local: { agent: local } }';
    case 'machine':
      return 'name the machine it runs on';
    case 'binary':
      return 'give the path of its .wasm file';
    case 'agent':
      return 'give wss://host:port or local';
    default:
      return undefined;
  }
}

function typeHint(field: string): string | undefined {
  if (field === 'args') return 'write a list of strings, e.g. [--port, "7000"]';
  if (field === 'cpu') return 'CPU is in cores, e.g. 0.5';
  return undefined;
}

function article(t: string): string {
  return /^[aeiou]/.test(t) ? `an ${t}` : `a ${t}`;
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  // JSON has no infinity or NaN (it writes them null): say them as YAML does.
  if (typeof v === 'number' && !Number.isFinite(v)) return Number.isNaN(v) ? '.nan' : v > 0 ? '.inf' : '-.inf';
  return `${typeof v} ${JSON.stringify(v)}`;
}

function getIn(value: unknown, path: readonly string[]): unknown {
  let v = value;
  for (const seg of path) v = v !== null && typeof v === 'object' ? (v as Record<string, unknown>)[seg] : undefined;
  return v;
}

function unescape(seg: string): string {
  return seg.replace(/~1/g, '/').replace(/~0/g, '~');
}

function firstLine(s: string): string {
  return s.split('\n')[0] ?? s;
}

/** The allowed key nearest to a misspelling (edit distance ≤ 2), for "did you mean". */
export function closest(name: string, options: readonly string[]): string | null {
  let best: string | null = null;
  let bestD = 3;
  for (const o of options) {
    const d = distance(name, o);
    if (d < bestD) {
      bestD = d;
      best = o;
    }
  }
  return best;
}

function distance(a: string, b: string): number {
  const dp = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = dp[0] as number;
    dp[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = dp[j] as number;
      dp[j] = Math.min((dp[j] as number) + 1, (dp[j - 1] as number) + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return dp[b.length] as number;
}

