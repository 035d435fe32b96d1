// The native floor of bench/wordcount: WordCount in one Node.js process, as a Node.js programmer
// would write it (read in chunks, lowercase, a regular expression for the words, a Map). Prints
// the same result as the example's collect: `word<TAB>count` by count descending then word
// ascending (bytes), then `total N words, D distinct`.
//   node native-count.mjs FILE...
import { openSync, readSync, closeSync } from 'node:fs';

const counts = new Map();
const WORD = /[a-z0-9]+/g;
const chunk = Buffer.alloc(1 << 24);
for (const file of process.argv.slice(2)) {
  const fd = openSync(file, 'r');
  let carry = '';
  for (;;) {
    const n = readSync(fd, chunk, 0, chunk.length, null);
    // latin1 keeps one character per byte, so only ASCII letters and digits match.
    let text = carry + chunk.toString('latin1', 0, n).toLowerCase();
    carry = '';
    if (n > 0) {
      // A word may go on in the next chunk: keep the trailing run back.
      let end = text.length;
      while (end > 0 && isWordChar(text.charCodeAt(end - 1))) end--;
      carry = text.slice(end);
      text = text.slice(0, end);
    }
    for (const m of text.matchAll(WORD)) counts.set(m[0], (counts.get(m[0]) ?? 0) + 1);
    if (n === 0) break;
  }
  closeSync(fd);
}
// toLowerCase maps some non-ASCII latin1 letters (À -> à) but never to ASCII, so they stay separators.

function isWordChar(c) {
  return (c >= 48 && c <= 57) || (c >= 97 && c <= 122);
}

const entries = [...counts];
entries.sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
let total = 0;
const lines = [];
for (const [w, c] of entries) {
  total += c;
  lines.push(`${w}\t${c}\n`);
}
lines.push(`total ${total} words, ${entries.length} distinct\n`);
process.stdout.write(lines.join(''));
