import { FAILSAFE_SCHEMA, load, Type } from 'js-yaml';
import { readBlock } from './block-read.js';

/*
 * The fast reading of an infra file: js-yaml, several times faster than the `yaml` library on big
 * files and in a third of its memory, with plain scalars resolved exactly as `yaml` resolves them
 * (YAML 1.2 core schema: the tests and conversions below are copied from `yaml`'s schema/core and
 * schema/common; `yes`, `0b1`, `1_000` and timestamps stay strings, `<<` is a plain key).
 * Wherever the two libraries could read the same text differently this refuses instead of
 * guessing, and parse.ts falls back to the `yaml` path, which then decides and reports: tags
 * (`!!float 1` is a string in `yaml`), aliases (`yaml` counts them against a limit), null and
 * collection keys (`yaml` names them differently), `%` directives (`%YAML 1.1` changes the schema
 * in `yaml` only), duplicate keys, and every syntax error.
 */

// Each plain scalar is tried against every type below: a look at its first character skips the
// regular expressions for the names, paths and words that make up most of a file.
const nullFirst = (c: number) => c === 0x7e || c === 0x4e || c === 0x6e; // ~ N n
const boolFirst = (c: number) => c === 0x54 || c === 0x74 || c === 0x46 || c === 0x66; // T t F f
const numberFirst = (c: number) => (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2b || c === 0x2e; // 0-9 - + .

const nullType = new Type('tag:yaml.org,2002:null', {
  kind: 'scalar',
  resolve: (s: string) => s === '' || (nullFirst(s.charCodeAt(0)) && /^(?:~|[Nn]ull|NULL)$/.test(s)),
  construct: () => null,
});

const BOOL = /^(?:[Tt]rue|TRUE|[Ff]alse|FALSE)$/;
const boolType = new Type('tag:yaml.org,2002:bool', {
  kind: 'scalar',
  resolve: (s: string) => boolFirst(s.charCodeAt(0)) && BOOL.test(s),
  construct: (s: string) => s[0] === 't' || s[0] === 'T',
});

const INT = /^[-+]?[0-9]+$/;
const INT_OCT = /^0o[0-7]+$/;
const INT_HEX = /^0x[0-9a-fA-F]+$/;
const intType = new Type('tag:yaml.org,2002:int', {
  kind: 'scalar',
  resolve: (s: string) => numberFirst(s.charCodeAt(0)) && (INT.test(s) || INT_OCT.test(s) || INT_HEX.test(s)),
  construct: (s: string) => (INT.test(s) ? parseInt(s, 10) : parseInt(s.substring(2), INT_OCT.test(s) ? 8 : 16)),
});

const FLOAT_NAN = /^(?:[-+]?\.(?:inf|Inf|INF)|\.nan|\.NaN|\.NAN)$/;
const FLOAT_EXP = /^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+$/;
const FLOAT = /^[-+]?(?:\.[0-9]+|[0-9]+\.[0-9]*)$/;
const floatType = new Type('tag:yaml.org,2002:float', {
  kind: 'scalar',
  resolve: (s: string) => numberFirst(s.charCodeAt(0)) && (FLOAT_NAN.test(s) || FLOAT_EXP.test(s) || FLOAT.test(s)),
  construct: (s: string) =>
    FLOAT_NAN.test(s) ? (s.slice(-3).toLowerCase() === 'nan' ? NaN : s[0] === '-' ? Number.NEGATIVE_INFINITY : Number.POSITIVE_INFINITY) : parseFloat(s),
});

const CORE = [nullType, boolType, intType, floatType];

/** A plain scalar as the core schema above reads it (block-read.ts reads plain scalars with it). */
export function plainValue(s: string): unknown {
  for (const type of CORE) if ((type.resolve as (s: string) => boolean)(s)) return (type.construct as (s: string) => unknown)(s);
  return s;
}

const SCHEMA = FAILSAFE_SCHEMA.extend({ implicit: [nullType, boolType, intType, floatType] });

/**
 * Text only the `yaml` path reads the same way: a `%` directive at the start of a line, a tag
 * (`!`) or an alias (`*`) where a node may start, an explicit key (`?`), or a flow collection used
 * as a key (`]:` / `}:`, whatever follows: js-yaml reads `[[x]:1]` as `[{x: 1}]`), or a comment
 * right after a closing quote (`"x"#c`: js-yaml reads it, `yaml` wants a space before the `#`). Inside a quoted string these may match too: then the file merely takes
 * the slow path.
 */
const DEFER = /^%|(?:^|[\s[\]{},])[!*?]|[\]}][ \t]*:|["']#/m;

/** The document, or null where only the `yaml` path can say what the text means (or what is wrong). */
export function fastLoad(text: string): { value: unknown } | null {
  const block = readBlock(text);
  if (block !== null) return block;
  if (DEFER.test(text) || spansLines(text)) return null;
  let value: unknown;
  try {
    value = load(text, { schema: SCHEMA });
  } catch {
    return null;
  }
  // js-yaml names a null key "null", `yaml` names it "": leave any key "null" to the yaml path.
  return hasNullKey(value) ? null : { value };
}

/**
 * Whether a flow collection (`[...]`, `{...}`) or a quoted scalar goes on past the end of its line:
 * `yaml` wants the lines that follow indented more than the key they belong to, js-yaml does not
 * check. A quote inside a plain scalar (`it's`) also counts: that file merely takes the slow path.
 */
function spansLines(text: string): boolean {
  const first = /["'[{]/g;
  while (first.exec(text) !== null) {
    let i = first.lastIndex - 1;
    let depth = 0;
    let quote = 0;
    for (; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c === 0x0a) break;
      if (quote === 0x22) {
        if (c === 0x5c) i++;
        else if (c === 0x22) quote = 0;
      } else if (quote === 0x27) {
        if (c === 0x27 && text.charCodeAt(i + 1) === 0x27) i++;
        else if (c === 0x27) quote = 0;
      } else if (c === 0x22 || c === 0x27) quote = c;
      else if (c === 0x5b || c === 0x7b) depth++;
      else if (c === 0x5d || c === 0x7d) depth--;
      else if (c === 0x23 && (text.charCodeAt(i - 1) === 0x20 || text.charCodeAt(i - 1) === 0x09)) break;
    }
    if (depth > 0 || quote !== 0) return true;
    if (i >= text.length) return false;
    i = text.indexOf('\n', i);
    if (i < 0) return false;
    first.lastIndex = i + 1;
  }
  return false;
}

function hasNullKey(v: unknown): boolean {
  if (v === null || typeof v !== 'object') return false;
  if (Array.isArray(v)) return v.some(hasNullKey);
  if (Object.hasOwn(v, 'null')) return true;
  for (const k in v) if (hasNullKey((v as Record<string, unknown>)[k])) return true;
  return false;
}
