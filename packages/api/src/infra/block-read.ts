import { plainValue } from './fast-load.js';

/*
 * The fastest reading of an infra file: one pass over the lines of the block-style subset a
 * hand-kept (or generated) infra file is written in, and nothing else. It gives up (null) on
 * anything it does not fully understand, and fast-load.ts (js-yaml), then parse.ts (`yaml`), read
 * the file instead; parse.property.test.ts checks all three agree.
 *
 * Why by hand: at 100,000 processes (36 MB a file) js-yaml took 2.7 s of the 4.3 s each side's
 * worker spent, and the checks around it (fast-load.ts: DEFER, spansLines, hasNullKey) 0.3 s
 * more; this reads the same file in ~0.5 s (docs/performance.md, "plan"). js-yaml is a
 * general-purpose reader: a character at a time through every YAML production, a Type lookup per
 * scalar. An infra file is block mappings, block sequences of scalars, one-line flow sequences and
 * one-line scalars; a line at a time, that is a few indexOf calls and one scan of each value.
 *
 * What it reads: block mappings and sequences (a sequence may sit at its key's indentation),
 * plain scalars resolved by the YAML 1.2 core schema (fast-load.ts plainValue, as `yaml` does),
 * single- and double-quoted scalars on one line (no escapes in double quotes), flow sequences and
 * flow mappings that open and close on one line, nested in each other (`grants: { memory: 64MiB,
 * network: { listen: [7000] } }`, the style of the examples), blank lines and comments. What makes
 * it give up: tabs, CR, BOM, control characters, anchors, aliases, tags, merge keys, block scalars
 * (`|`, `>`), a flow collection over several lines, a flow pair without `: ` (`{a:1}`, `{a}`), a
 * trailing comma, a `: ` inside a plain scalar of a flow collection, multi-line scalars, explicit keys,
 * directives and document markers (but a `---` on the first line), a key that is not a string (`1:`, `null:`, `true:`),
 * `__proto__`, duplicate keys, and indentation it does not expect.
 *
 * What a fleet writes again is read once: a scalar (Reader.scalar), and inside a process or a
 * machine, a block or one-line flow collection (Reader.block: a service's replicas share their
 * grants, env and config; at 50,000 processes in the examples' style, the reader's time halved).
 */

/** Characters a plain key may hold (ASCII letters, digits, `_`, `.`, `-`, `/`); anything else gives up, or is quoted. */
const KEY = new Uint8Array(128);
for (const c of 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-/') KEY[c.charCodeAt(0)] = 1;

/** Characters that give a line or a file up wherever they are: C0 and C1 controls (tab and CR among them), DEL, BOM, LS, PS. */
// eslint-disable-next-line no-control-regex -- control characters are what it looks for
const REFUSED = /[\x00-\x09\x0b-\x1f\x7f-\x9f\ufeff\u2028\u2029]/;

const SPACE = 0x20;
const HASH = 0x23;
const COLON = 0x3a;
const DASH = 0x2d;
const DQUOTE = 0x22;
const SQUOTE = 0x27;

class GiveUp extends Error {}
const giveUp = new GiveUp();

/** The document, or null where only js-yaml or `yaml` may read the text. */
export function readBlock(text: string): { value: Record<string, unknown> } | null {
  if (REFUSED.test(text)) return null;
  const r = new Reader(text);
  // A document start marker on the first line (`---`, as some YAML writers begin every file): the
  // same one document. Anything else on that line, or a marker later, is left to the others.
  if (text.startsWith('---')) {
    const eol = text.indexOf('\n');
    if (!/^(?: +(?:#.*)?)?$/.test(text.slice(3, eol < 0 ? text.length : eol))) return null;
    r.skipTo(eol < 0 ? text.length : eol + 1);
  }
  try {
    r.nextLine();
    if (r.end < 0 || r.indent !== 0) return null;
    const value = r.mapping(0, 0);
    if (r.end >= 0) return null;
    return { value };
  } catch (err) {
    if (err === giveUp) return null;
    throw err;
  }
}

/** The text of a quoted scalar, quotes included, as the string it means (no escapes in double quotes: quotedEnd). */
function quotedValue(text: string): string {
  const s = text.slice(1, -1);
  return text.charCodeAt(0) === SQUOTE && s.includes("''") ? s.replaceAll("''", "'") : s;
}

/** How many scalars Reader.scalar remembers (a power of two). */
const SCALAR_SLOTS = 4096;

/** Reader.block: how many blocks it remembers at most (then it starts again), for how many keys, and after how many tries a key whose blocks repeat less than one time in four is no longer looked up. */
const BLOCKS = 4096;
const BLOCK_KEYS = 256;
const BLOCK_TRIAL = 32;
/** The longest block Reader.block looks up, in characters (a process's grants or env is a few hundred). */
const BLOCK_CHARS = 16 * 1024;
/**
 * How deep block mappings may nest (the file's is 0): an infra file goes 5 deep. Finding a block's
 * end reads its lines once more, so a line is read at most this many times more, whatever the file
 * (and a file nested thousands deep gives up here, not with a RangeError from the recursion).
 */
const BLOCK_DEPTH = 32;

class Reader {
  /** Reader.scalar's memory: a slot's text as written, and its value. */
  private readonly texts: (string | undefined)[] = new Array<string | undefined>(SCALAR_SLOTS).fill(undefined);
  private readonly values: unknown[] = new Array<unknown>(SCALAR_SLOTS).fill(undefined);
  /**
   * Where a sequence's items are gathered (a block sequence's, and a flow sequence's, which may be
   * one of its items), then copied into an array of their number: an array grown by push from
   * empty keeps room for 17, and at 100,000 processes the args, listen and connect lists of a
   * fleet so kept were ~40% of the parsed file's memory (and of what the garbage collector copied).
   */
  private readonly items: unknown[] = [];
  /** The same for flow sequences, one a nesting depth. */
  private readonly flowItems: unknown[][] = [];
  /** Reader.block's memory: a block's text, and its value. */
  private readonly blocks = new Map<string, unknown>();
  /** How often Reader.block looked a key's blocks up, and found them. */
  private readonly blockStats = new Map<string, { tries: number; hits: number }>();
  /** Where the flow collection read last ends (after its closing bracket). */
  private at = 0;
  /** The current line: its indentation, where its content starts and where it ends (-1 past the last line). */
  indent = 0;
  start = 0;
  end = 0;
  /** Where the line after the current one starts. */
  private next = 0;

  constructor(private readonly text: string) {}

  /** Start reading at `pos` (past a document start marker). */
  skipTo(pos: number): void {
    this.next = pos;
  }

  /** Moves to the next line that is neither blank nor a comment. */
  nextLine(): void {
    const t = this.text;
    const n = t.length;
    let pos = this.next;
    while (pos < n) {
      let eol = t.indexOf('\n', pos);
      if (eol < 0) eol = n;
      let i = pos;
      while (i < eol && t.charCodeAt(i) === SPACE) i++;
      if (i < eol && t.charCodeAt(i) !== HASH) {
        this.indent = i - pos;
        this.start = i;
        this.end = eol;
        this.next = eol + 1;
        return;
      }
      pos = eol + 1;
    }
    this.end = -1;
    this.indent = -1;
    this.next = n;
  }

  /** A block mapping whose keys are at `indent`, `depth` mappings deep (0: the file's); the current line is its first. */
  mapping(indent: number, depth: number): Record<string, unknown> {
    // Deeper than any infra file goes (processes, a process, grants, network, a list): left to the others.
    if (depth > BLOCK_DEPTH) throw giveUp;
    const t = this.text;
    const out: Record<string, unknown> = {};
    while (this.end >= 0 && this.indent === indent) {
      let i = this.start;
      const end = this.end;
      let key: string;
      const c = t.charCodeAt(i);
      if (c === DQUOTE || c === SQUOTE) {
        i = this.quotedEnd(i, end);
        key = this.scalar(this.start, i) as string;
        if (t.charCodeAt(i) !== COLON) throw giveUp;
      } else {
        // A document marker, or a sequence where a key belongs.
        if (c === DASH || (indent === 0 && c === 0x2e && t.startsWith('...', i))) throw giveUp;
        while (i < end) {
          const k = t.charCodeAt(i);
          if (k >= 128 || KEY[k] === 0) break;
          i++;
        }
        if (i === this.start || t.charCodeAt(i) !== COLON || i - this.start > 1000) throw giveUp;
        const plain = this.scalar(this.start, i);
        if (typeof plain !== 'string') throw giveUp;
        key = plain;
      }
      if (key === '__proto__' || key === '<<' || Object.hasOwn(out, key)) throw giveUp;
      i++;
      if (i < end && t.charCodeAt(i) !== SPACE) throw giveUp;
      while (i < end && t.charCodeAt(i) === SPACE) i++;
      if (i === end || t.charCodeAt(i) === HASH) {
        this.nextLine();
        if (this.end >= 0 && this.indent > indent) {
          out[key] = depth >= 2 ? this.block(key, depth + 1) : this.isItem() ? this.sequence(this.indent) : this.mapping(this.indent, depth + 1);
        } else if (this.end >= 0 && this.indent === indent && this.isItem()) {
          out[key] = this.sequence(indent);
        } else {
          out[key] = null;
        }
      } else {
        const c = t.charCodeAt(i);
        out[key] = depth >= 2 && (c === 0x5b || c === 0x7b) ? this.flowBlock(key, i, end) : this.value(i, end);
        this.nextLine();
      }
      // Deeper than the keys here, not after `key:`: a continued scalar or an error; both for the others.
      if (this.indent > indent) throw giveUp;
    }
    return out;
  }

  /**
   * The block under `key` (a mapping `depth` deep, or a sequence), which starts on the current line,
   * indented more than `key`: read once a text. A fleet's processes repeat their blocks (the grants
   * of a service's replicas, its env, its network), and a block's value is a function of its text
   * alone (its lines carry their indentation; the line that ends it is read by the key's mapping):
   * the text read again gives the value read before, the same object (nothing downstream changes a
   * parsed value: parse.ts checks it, resolve.ts builds new specs from it). A new block is
   * remembered only where reading it ended where blockEnd said; were blockEnd ever to end one
   * early, the rest of the block would be left to the key's mapping, which gives up on it. Keys
   * whose blocks do not repeat (`args`, most often) stop being looked up.
   */
  private block(key: string, depth: number): unknown {
    const seq = this.isItem();
    const m = this.indent;
    const stat = this.statOf(key);
    if (stat === undefined) return seq ? this.sequence(m) : this.mapping(m, depth);
    stat.tries++;
    const from = this.start - m;
    const to = this.blockEnd(m, from + BLOCK_CHARS);
    if (to < 0) return seq ? this.sequence(m) : this.mapping(m, depth);
    const text = this.text.slice(from, to);
    const seen = this.blocks.get(text);
    if (seen !== undefined) {
      stat.hits++;
      this.skipTo(to);
      this.nextLine();
      return seen;
    }
    const value = seq ? this.sequence(m) : this.mapping(m, depth);
    if ((this.end < 0 ? this.text.length : this.start - this.indent) === to) this.remember(text, value);
    return value;
  }

  /** A flow collection at `i` that is the rest of the line, under `key`: read once a text, as Reader.block reads a block. */
  private flowBlock(key: string, i: number, end: number): unknown {
    const stat = this.statOf(key);
    if (stat === undefined) return this.value(i, end);
    stat.tries++;
    const text = this.text.slice(i, end);
    const seen = this.blocks.get(text);
    if (seen !== undefined) {
      stat.hits++;
      return seen;
    }
    const value = this.value(i, end);
    this.remember(text, value);
    return value;
  }

  /** How often a key's blocks were looked up and found, or undefined where they are no longer looked up. */
  private statOf(key: string): { tries: number; hits: number } | undefined {
    let stat = this.blockStats.get(key);
    if (stat === undefined && this.blockStats.size < BLOCK_KEYS) this.blockStats.set(key, (stat = { tries: 0, hits: 0 }));
    return stat === undefined || (stat.tries >= BLOCK_TRIAL && stat.hits * 4 < stat.tries) ? undefined : stat;
  }

  private remember(text: string, value: unknown): void {
    if (this.blocks.size >= BLOCKS) this.blocks.clear();
    this.blocks.set(text, value);
  }

  /**
   * Where the block that starts on the current line, indented `m`, ends: the start of the first line
   * (neither blank nor a comment) indented less; -1 where it goes on past `limit`. Where the reader
   * takes the block, that is where it ends it: a line indented less than `m` ends a block mapping or
   * sequence at `m`; one indented `m` or more and not read as part of it makes the reader give up (a
   * block's items are at `m`, and after the block the key's mapping gives up on a line indented
   * more than its keys).
   */
  private blockEnd(m: number, limit: number): number {
    const t = this.text;
    const n = t.length;
    let pos = this.next;
    while (pos < n) {
      if (pos > limit) return -1;
      let eol = t.indexOf('\n', pos);
      if (eol < 0) eol = n;
      let i = pos;
      while (i < eol && t.charCodeAt(i) === SPACE) i++;
      if (i - pos < m && i < eol && t.charCodeAt(i) !== HASH) return pos;
      pos = eol + 1;
    }
    return n;
  }

  private isItem(): boolean {
    return this.text.charCodeAt(this.start) === DASH && (this.start + 1 === this.end || this.text.charCodeAt(this.start + 1) === SPACE);
  }

  /** A block sequence of one-line values whose dashes are at `indent`. */
  private sequence(indent: number): unknown[] {
    const t = this.text;
    const out = this.items;
    out.length = 0;
    while (this.end >= 0 && this.indent === indent && this.isItem()) {
      let i = this.start + 1;
      const end = this.end;
      while (i < end && t.charCodeAt(i) === SPACE) i++;
      if (i === end || t.charCodeAt(i) === HASH) throw giveUp;
      out.push(this.value(i, end));
      this.nextLine();
      if (this.indent > indent) throw giveUp;
    }
    return out.slice();
  }

  /** A value that starts at `i` and is the rest of the line. */
  private value(i: number, end: number): unknown {
    const t = this.text;
    const c = t.charCodeAt(i);
    if (c === DQUOTE || c === SQUOTE) {
      const close = this.quotedEnd(i, end);
      this.rest(close, end);
      return this.scalar(i, close);
    }
    if (c === 0x5b || c === 0x7b) {
      const v = this.flowCollection(i, end, 0);
      this.rest(this.at, end);
      return v;
    }
    // Indicators that cannot start a plain scalar (`-` can, followed by a non-space; `?` and `:` too, but are left to the others).
    if (c === 0x2c || c === 0x5d || c === 0x7d || c === 0x26 || c === 0x2a || c === 0x21 || c === 0x7c || c === 0x3e || c === 0x25 || c === 0x40 || c === 0x60 || c === 0x3f || c === COLON) throw giveUp;
    if (c === DASH && (i + 1 === end || t.charCodeAt(i + 1) === SPACE)) throw giveUp;
    let j = i;
    let last = i;
    for (; j < end; j++) {
      const k = t.charCodeAt(j);
      if (k === SPACE) {
        if (t.charCodeAt(j + 1) === HASH) break;
        continue;
      }
      if (k === COLON && (j + 1 === end || t.charCodeAt(j + 1) === SPACE)) throw giveUp;
      if (k === 0x5b || k === 0x5d || k === 0x7b || k === 0x7d) throw giveUp;
      last = j;
    }
    return this.scalar(i, last + 1);
  }

  /** The flow sequence or mapping whose bracket is at `i`, closed on this line; `at` is set past its end. */
  private flowCollection(i: number, end: number, depth: number): unknown {
    // Deeper than any infra file goes: left to the others (and no deep recursion here).
    if (depth > 16) throw giveUp;
    return this.text.charCodeAt(i) === 0x5b ? this.flowSequence(i, end, depth) : this.flowMapping(i, end, depth);
  }

  /** `[a, "b", {c: d}]` on one line; its items are scalars and flow collections. */
  private flowSequence(i: number, end: number, depth: number): unknown[] {
    i = this.spaces(i + 1, end);
    if (this.text.charCodeAt(i) === 0x5d) {
      this.at = i + 1;
      return [];
    }
    const out = (this.flowItems[depth] ??= []);
    out.length = 0;
    do {
      out.push(this.flowItem(i, end, depth, 0x5d));
      i = this.flowNext(this.at, end, 0x5d);
    } while (i >= 0);
    return out.slice();
  }

  /**
   * `{a: 1, "b": [c], d: {e: f}}` on one line: each key a plain key (KEY's characters) or quoted,
   * followed by `: `; each value a scalar or a flow collection.
   */
  private flowMapping(i: number, end: number, depth: number): Record<string, unknown> {
    const t = this.text;
    i = this.spaces(i + 1, end);
    const out: Record<string, unknown> = {};
    if (t.charCodeAt(i) === 0x7d) {
      this.at = i + 1;
      return out;
    }
    do {
      let key: unknown;
      const c = t.charCodeAt(i);
      if (c === DQUOTE || c === SQUOTE) {
        const close = this.quotedEnd(i, end);
        key = this.scalar(i, close);
        i = close;
      } else {
        if (c === DASH) throw giveUp;
        let j = i;
        while (j < end) {
          const k = t.charCodeAt(j);
          if (k >= 128 || KEY[k] === 0) break;
          j++;
        }
        if (j === i || j - i > 1000) throw giveUp;
        key = this.scalar(i, j);
        i = j;
      }
      // `key: ` exactly: `{a:1}` is one scalar in YAML, `{a : 1}` and `{a}` are left to the others.
      if (typeof key !== 'string' || t.charCodeAt(i) !== COLON || t.charCodeAt(i + 1) !== SPACE || i + 1 >= end) throw giveUp;
      if (key === '__proto__' || key === '<<' || Object.hasOwn(out, key)) throw giveUp;
      out[key] = this.flowItem(this.spaces(i + 2, end), end, depth, 0x7d);
      i = this.flowNext(this.at, end, 0x7d);
    } while (i >= 0);
    return out;
  }

  /**
   * One item of a flow collection that `close` (`]` or `}`) ends, at `i`: a flow collection, a
   * quoted scalar or a plain one (up to the next `,` or `close`); `at` is set past it.
   */
  private flowItem(i: number, end: number, depth: number, close: number): unknown {
    const t = this.text;
    if (i === end) throw giveUp;
    const c = t.charCodeAt(i);
    if (c === 0x5b || c === 0x7b) return this.flowCollection(i, end, depth + 1);
    if (c === DQUOTE || c === SQUOTE) {
      this.at = this.quotedEnd(i, end);
      return this.scalar(i, this.at);
    }
    // An empty item (`[a, , b]`, `{a: , b: 1}`) and the indicators a plain scalar cannot start with.
    if (c === 0x2c || c === 0x5d || c === 0x7d || c === HASH || c === 0x26 || c === 0x2a || c === 0x21 || c === 0x7c || c === 0x3e || c === 0x25 || c === 0x40 || c === 0x60 || c === 0x3f || c === COLON) throw giveUp;
    if (c === DASH && (i + 1 === end || t.charCodeAt(i + 1) === SPACE || t.charCodeAt(i + 1) === 0x2c || t.charCodeAt(i + 1) === close)) throw giveUp;
    let j = i;
    let last = i;
    for (; j < end; j++) {
      const k = t.charCodeAt(j);
      if (k === 0x2c || k === close) break;
      if (k === SPACE) continue;
      // `host:port` is one plain scalar; `a: b`, `a:,` and `a:]` are pairs.
      if (k === COLON) {
        const after = t.charCodeAt(j + 1);
        if (j + 1 === end || after === SPACE || after === 0x2c || after === close) throw giveUp;
      } else if (k === HASH || k === 0x5b || k === 0x5d || k === 0x7b || k === 0x7d || k === DQUOTE || k === SQUOTE) throw giveUp;
      last = j;
    }
    this.at = j;
    return this.scalar(i, last + 1);
  }

  /** After an item, at `i`: the next item's start (past a `,`), or -1 at `close` (`at` past it). */
  private flowNext(i: number, end: number, close: number): number {
    const t = this.text;
    i = this.spaces(i, end);
    if (t.charCodeAt(i) === close) {
      this.at = i + 1;
      return -1;
    }
    if (t.charCodeAt(i) !== 0x2c) throw giveUp;
    // A trailing comma (`[a, ]`): `yaml` reads it, but leave it to the others.
    i = this.spaces(i + 1, end);
    if (t.charCodeAt(i) === close) throw giveUp;
    return i;
  }

  /** The first position from `i` that is not a space (`end` at most). */
  private spaces(i: number, end: number): number {
    const t = this.text;
    while (i < end && t.charCodeAt(i) === SPACE) i++;
    return i;
  }

  /** Where the quoted scalar that starts at `i` ends (after its closing quote), on this line; no escapes in double quotes. */
  private quotedEnd(i: number, end: number): number {
    const t = this.text;
    const q = t.charCodeAt(i);
    let j = i + 1;
    for (;;) {
      j = t.indexOf(q === DQUOTE ? '"' : "'", j);
      if (j < 0 || j >= end) throw giveUp;
      if (q === SQUOTE && t.charCodeAt(j + 1) === SQUOTE) {
        j += 2;
        continue;
      }
      if (q === DQUOTE) for (let k = i + 1; k < j; k++) if (t.charCodeAt(k) === 0x5c) throw giveUp;
      return j + 1;
    }
  }

  /**
   * The value of the scalar written at [i, end): plain (resolved by the core schema) or quoted
   * (quotes included). A file says the same few things over and over (`machine`, `grants`, `64MiB`,
   * `on-failure`): a scalar whose text was read before gives the same value without a new string.
   * That saves more than the allocation: a key string seen before has already been looked up in
   * V8's table of property names, which each fresh copy of it costs again (at 100,000 processes,
   * ~0.3 s of the ~1.3 s this reader took per file).
   */
  private scalar(i: number, end: number): unknown {
    const t = this.text;
    const len = end - i;
    const slot = (len * 0x2f ^ t.charCodeAt(i) * 0x3b ^ t.charCodeAt(end - 1) * 0x61 ^ t.charCodeAt(i + (len >> 1)) * 0x95 ^ t.charCodeAt(end - 2) * 0xe3) & (SCALAR_SLOTS - 1);
    const seen = this.texts[slot];
    if (seen !== undefined && seen.length === len && t.startsWith(seen, i)) return this.values[slot];
    const text = t.slice(i, end);
    const c = text.charCodeAt(0);
    const value = c === DQUOTE || c === SQUOTE ? quotedValue(text) : plainValue(text);
    this.texts[slot] = text;
    this.values[slot] = value;
    return value;
  }

  /** After a value: nothing, or spaces and a comment. */
  private rest(i: number, end: number): void {
    const t = this.text;
    if (i === end) return;
    if (t.charCodeAt(i) !== SPACE) throw giveUp;
    while (i < end && t.charCodeAt(i) === SPACE) i++;
    if (i < end && t.charCodeAt(i) !== HASH) throw giveUp;
  }
}
