import net from 'node:net';

export interface LatencyProxy {
  port: number;
  stats: { connections: number; dropped: number; repliesDropped: number; bytesFromTarget: number };
  /**
   * From now on the target's bytes reach the client at `bytesPerSecond` at most (a slow link, or
   * replies that come one by one); null lifts the limit. 0 silences the link for good: what the
   * target sends from then on is never delivered.
   */
  limitReplies(bytesPerSecond: number | null): void;
  close(): Promise<void>;
}

/**
 * A TCP proxy that adds latency in each direction (uniform in [min, max] ms per chunk, order kept)
 * and can drop every n-th connection (`dropEvery`), and the first n (`dropFirst`), after it carried
 * some bytes: geography and flaky links for tests, since this kernel has no netem.
 *
 * `dropReplies`: the worst moment for a link to fail: the first `count` chunks from the target
 * matching `match` (e.g. the reply to a call that changed something) are not delivered; the
 * connection is cut instead, so the client never learns that its call was made.
 */
export async function startLatencyProxy(opts: {
  target: { host: string; port: number };
  delayMs: [number, number];
  dropEvery?: number;
  dropFirst?: number;
  dropReplies?: { match: RegExp; count: number };
}): Promise<LatencyProxy> {
  const stats = { connections: 0, dropped: 0, repliesDropped: 0, bytesFromTarget: 0 };
  let replyRate: number | null = null;
  const sockets = new Set<net.Socket>();
  const delay = () => opts.delayMs[0] + Math.random() * (opts.delayMs[1] - opts.delayMs[0]);
  /**
   * Forward with delay, preserving order: each chunk leaves no earlier than the one before it, from
   * one queue per direction. (One timer per chunk reordered them: timers of different durations
   * due in the same millisecond fire in no set order, so a start sent behind a stop could reach
   * the agent first, and a WebSocket frame split over two chunks could arrive scrambled.)
   */
  const pipe = (from: net.Socket, to: net.Socket, onBytes: () => void, fromTarget = false) => {
    const queue: { at: number; chunk: Buffer }[] = [];
    let last = 0;
    let timer: NodeJS.Timeout | null = null;
    let ended = false;
    const pump = () => {
      timer = null;
      for (let next = queue[0]; next !== undefined && next.at <= Date.now(); next = queue[0]) {
        queue.shift();
        if (!to.destroyed) to.write(next.chunk);
        onBytes();
      }
      if (queue[0] !== undefined) timer = setTimeout(pump, Math.max(0, queue[0].at - Date.now()));
      else if (ended && !to.destroyed) to.end();
    };
    from.on('data', (chunk: Buffer) => {
      const cut = opts.dropReplies;
      if (fromTarget && cut !== undefined && stats.repliesDropped < cut.count && cut.match.test(chunk.toString('latin1'))) {
        stats.repliesDropped++;
        from.destroy();
        to.destroy();
        return;
      }
      if (fromTarget) stats.bytesFromTarget += chunk.length;
      if (fromTarget && replyRate === 0) return;
      // At a limited rate each piece (about 20 ms of bytes, so replies written together still come
      // one after another) takes its length's time after the one before it.
      const rate = fromTarget ? replyRate : null;
      const piece = rate === null ? chunk.length : Math.max(1, Math.floor(rate / 50));
      for (let off = 0; off < chunk.length; off += piece) {
        const part = chunk.subarray(off, off + piece);
        const at = Math.max(off === 0 ? Date.now() + delay() : 0, last + (rate === null ? 0 : (part.length * 1000) / rate));
        last = at;
        queue.push({ at, chunk: part });
      }
      if (timer === null) timer = setTimeout(pump, Math.max(0, (queue[0] as { at: number }).at - Date.now()));
    });
    from.on('end', () => {
      ended = true;
      if (timer === null && queue.length === 0 && !to.destroyed) to.end();
    });
  };
  const server = net.createServer((client) => {
    stats.connections++;
    const n = stats.connections;
    const upstream = net.connect(opts.target.port, opts.target.host);
    sockets.add(client);
    sockets.add(upstream);
    let bytes = 0;
    const maybeDrop = () => {
      bytes++;
      if (((opts.dropEvery !== undefined && n % opts.dropEvery === 0) || n <= (opts.dropFirst ?? 0)) && bytes === 3) {
        stats.dropped++;
        client.destroy();
        upstream.destroy();
      }
    };
    pipe(client, upstream, maybeDrop);
    pipe(upstream, client, maybeDrop, true);
    const cleanup = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', cleanup);
    upstream.on('error', cleanup);
    client.on('close', cleanup);
    upstream.on('close', cleanup);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    stats,
    limitReplies: (bytesPerSecond) => {
      replyRate = bytesPerSecond;
    },
    close: () =>
      new Promise((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}
