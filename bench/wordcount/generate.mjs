// Generated text for bench/wordcount: a Zipf-like draw from a fixed vocabulary (mixed case, some
// digits), with punctuation, newlines and a few non-ASCII bytes between words. Deterministic for
// a given size and seed, so every run counts the same text.
import { createWriteStream } from 'node:fs';

/** xorshift32: fast, deterministic, good enough to draw words. */
function rng(seed) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 4294967296;
  };
}

const SYLLABLES = ['ka', 'lo', 'mi', 'ne', 'ru', 'sa', 'ti', 'vo', 'zu', 'an', 'er', 'is', 'on', 'ul', 'th', 'qu', 'st', 'pr'];
function vocabulary(size, rand) {
  const words = new Set();
  while (words.size < size) {
    let w = '';
    const n = 1 + Math.floor(rand() * 4);
    for (let i = 0; i < n; i++) w += SYLLABLES[Math.floor(rand() * SYLLABLES.length)];
    if (rand() < 0.05) w += String(Math.floor(rand() * 100));
    words.add(w);
  }
  return [...words];
}

const SEPARATORS = [' ', ' ', ' ', ' ', ' ', ', ', '. ', '\n', ' -- ', '; ', ' (', ') ', '\u00e9 ', '"'];

/** Write `bytes` bytes (at least) of text to `file`; resolves when it is on disk. */
export function generate(file, bytes, seed = 1) {
  const rand = rng(seed);
  const vocab = vocabulary(50_000, rand);
  // Zipf-like: index = floor(V * u^3) makes low indices common and the tail long.
  const out = createWriteStream(file);
  let written = 0;
  return new Promise((resolve, reject) => {
    out.on('error', reject);
    const pump = () => {
      while (written < bytes) {
        let s = '';
        for (let i = 0; i < 4096; i++) {
          let w = vocab[Math.floor(vocab.length * rand() ** 3)];
          const r = rand();
          if (r < 0.1) w = w[0].toUpperCase() + w.slice(1);
          else if (r < 0.12) w = w.toUpperCase();
          s += w + SEPARATORS[Math.floor(rand() * SEPARATORS.length)];
        }
        const buf = Buffer.from(s, 'latin1');
        written += buf.length;
        if (!out.write(buf)) return out.once('drain', pump);
      }
      out.end(resolve);
    };
    pump();
  });
}
