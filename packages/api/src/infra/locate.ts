import type { Document, LineCounter, Node, Pair, YAMLMap } from 'yaml';
import { yamlLib } from './yaml-lib.js';

export interface Position {
  line: number;
  column: number;
}

/**
 * Finds where a field path (`['processes', 'kv', 'grants']`) sits in the YAML source. With
 * `key: true` it points at the key itself (for unknown keys), otherwise at the value. Falls back
 * to the nearest enclosing node that exists, so every diagnostic has a position.
 */
export function locate(doc: Document, lines: LineCounter, path: readonly (string | number)[], key = false): Position {
  const { isMap, isSeq } = yamlLib();
  let node: unknown = doc.contents;
  let best: Node | null = (doc.contents as Node | null) ?? null;
  for (let i = 0; i < path.length; i++) {
    const seg = path[i];
    if (isMap(node)) {
      const pair = pairsByKey(node).get(String(seg));
      if (pair === undefined) break;
      const last = i === path.length - 1;
      if (last && key && pair.key !== null && typeof pair.key === 'object') {
        best = pair.key as Node;
        break;
      }
      node = pair.value;
      if (node !== null && typeof node === 'object' && 'range' in node) best = node as Node;
      else if (pair.key !== null && typeof pair.key === 'object') best = pair.key as Node;
    } else if (isSeq(node) && typeof seg === 'number') {
      node = node.items[seg];
      if (node !== null && typeof node === 'object' && 'range' in node) best = node as Node;
    } else {
      break;
    }
  }
  const offset = best?.range?.[0] ?? 0;
  const p = lines.linePos(offset);
  return { line: p.line, column: p.col };
}

const indexes = new WeakMap<YAMLMap, Map<string, Pair>>();

/** A mapping's pairs by key (the first of duplicates), built once: one lookup per diagnostic, not a scan. */
function pairsByKey(map: YAMLMap): Map<string, Pair> {
  let index = indexes.get(map);
  if (index === undefined) {
    index = new Map();
    for (const p of map.items) {
      const k = String((p.key as { value?: unknown } | null)?.value ?? p.key);
      if (!index.has(k)) index.set(k, p);
    }
    indexes.set(map, index);
  }
  return index;
}
