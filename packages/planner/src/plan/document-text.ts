import { pendingBefore, type BeforeLists, type PlanDocument, type PlanMachine } from './document.js';

/*
 * A plan document's JSON text (`plan --json`, `plan --out`): exactly `JSON.stringify(doc, null, 2)`,
 * in pieces, with the machines' `before` tables written straight from the base's lists where
 * buildDocument left them there. At 50,000 processes those tables are 4.5 of the document's 7.6
 * MB: made as objects and then stringified they cost the command's last thread ~0.1 s, and the
 * whole text as one string ~2,000 fresh pages more (process-lists.property.test.ts: the same text).
 */

/** Pieces of about this many characters; each is written as it is (no join into one string). */
const PIECE = 1 << 16;

/** Strings JSON writes as they are, between quotes: names and digests, nearly always. */
const PLAIN = /^[A-Za-z0-9._\-/:@]*$/;

/**
 * JSON.stringify of a string, which for a plain one is the string between quotes. Called twice a
 * process, JSON.stringify took ~0.1 s at 50,000 processes on Node.js 20 (~0.03 s on 24); with the
 * test first, 0.02-0.03 s on both.
 */
const quote = (text: string): string => (PLAIN.test(text) ? `"${text}"` : JSON.stringify(text));

/** The document's text, in pieces whose concatenation is JSON.stringify(doc, null, 2). */
export function documentText(doc: PlanDocument): string[] {
  const names = Object.keys(doc.machines);
  if (!names.some((n) => pendingBefore.has(doc.machines[n] as PlanMachine))) return [JSON.stringify(doc, null, 2)];
  // Everything but the machines as V8 writes it, the machines put in where it wrote `{}`. No
  // string value can hold this mark: a newline inside a string is written `\n`.
  const mark = '\n  "machines": {}';
  const rest = JSON.stringify({ ...doc, machines: {} }, null, 2);
  const at = rest.indexOf(mark);
  if (at < 0) return [JSON.stringify(doc, null, 2)];
  const out: string[] = [];
  let s = rest.slice(0, at + mark.length - 2);
  const flush = () => {
    if (s.length < PIECE) return;
    out.push(s);
    s = '';
  };
  s += '{';
  names.forEach((name, k) => {
    s += `${k === 0 ? '' : ','}\n    ${quote(name)}: `;
    machineText(doc.machines[name] as PlanMachine, (t) => {
      s += t;
      flush();
    });
  });
  s += '\n  }';
  out.push(s, rest.slice(at + mark.length));
  return out;
}

/** One machine's record at depth 2, as JSON.stringify(doc, null, 2) writes it there. */
function machineText(m: PlanMachine, write: (t: string) => void): void {
  const lists = pendingBefore.get(m);
  const record = m as unknown as Record<string, unknown>;
  let first = true;
  write('{');
  for (const key of Object.keys(m)) {
    // Read through the descriptor: a `before` still in its lists is written from them, not made.
    const desc = Object.getOwnPropertyDescriptor(m, key);
    const pending = key === 'before' && lists !== undefined && desc?.get !== undefined;
    const value = pending ? undefined : record[key];
    if (!pending && (value === undefined || typeof value === 'function' || typeof value === 'symbol')) continue;
    write(`${first ? '' : ','}\n      ${JSON.stringify(key)}: `);
    first = false;
    if (pending) beforeText(lists, write);
    else write((JSON.stringify(value, null, 2) as string).replaceAll('\n', '\n      '));
  }
  write(first ? '}' : '\n    }');
}

/** A `before` table at depth 3 from the lists, in their order (buildDocument keeps lists only where that is the table's order). */
function beforeText(l: BeforeLists, write: (t: string) => void): void {
  if (l.at.length === 0) return write('{}');
  let s = '{';
  for (let k = 0; k < l.at.length; k++) {
    const i = l.at[k] as number;
    s += `${k === 0 ? '' : ','}\n        ${quote(l.names[i] as string)}: ${quote(l.digests[i] as string)}`;
    if (s.length >= PIECE) {
      write(s);
      s = '';
    }
  }
  write(`${s}\n      }`);
}
