import { isMap, isSeq, type Document, type LineCounter, type Node } from 'yaml';

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
  let node: unknown = doc.contents;
  let best: Node | null = (doc.contents as Node | null) ?? null;
  for (let i = 0; i < path.length; i++) {
    const seg = path[i];
    if (isMap(node)) {
      const pair = node.items.find((p) => String((p.key as { value?: unknown } | null)?.value ?? p.key) === String(seg));
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
