/**
 * Run `f` over `items`, at most `limit` at once and at most `perTurn` begun in one turn of the event
 * loop; each item's error (undefined: it succeeded), in order.
 */
export async function mapBounded<T>(items: T[], limit: number, f: (item: T) => Promise<void>, perTurn = Infinity): Promise<unknown[]> {
  const errors: unknown[] = new Array(items.length).fill(undefined);
  let next = 0;
  let begun = 0;
  let turn: Promise<void> | null = null;
  const nextTurn = () =>
    (turn ??= new Promise<void>((resolve) =>
      setImmediate(() => {
        turn = null;
        begun = 0;
        resolve();
      }),
    ));
  const worker = async () => {
    for (;;) {
      while (begun >= perTurn) await nextTurn();
      if (next >= items.length) return;
      begun++;
      const i = next++;
      try {
        await f(items[i] as T);
      } catch (err) {
        errors[i] = err ?? new Error('failed');
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return errors;
}
