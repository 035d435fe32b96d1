import net from 'node:net';

export interface LatencyProxy {
  port: number;
  stats: { connections: number; dropped: number; repliesDropped: number };
  close(): Promise<void>;
}

/**
 * A TCP proxy that adds latency in each direction (uniform in [min, max] ms per chunk, order kept)
 * and can drop every n-th connection after it carried some bytes: geography and flaky links for
 * tests, since this kernel has no netem.
 *
 * `dropReplies`: the worst moment for a link to fail: the first `count` chunks from the target
 * matching `match` (e.g. the reply to a call that changed something) are not delivered; the
 * connection is cut instead, so the client never learns that its call was made.
 */
export async function startLatencyProxy(opts: {
  target: { host: string; port: number };
  delayMs: [number, number];
  dropEvery?: number;
  dropReplies?: { match: RegExp; count: number };
}): Promise<LatencyProxy> {
  const stats = { connections: 0, dropped: 0, repliesDropped: 0 };
  const sockets = new Set<net.Socket>();
  const delay = () => opts.delayMs[0] + Math.random() * (opts.delayMs[1] - opts.delayMs[0]);
  /** Forward with delay, preserving order: each chunk leaves no earlier than the one before it. */
  const pipe = (from: net.Socket, to: net.Socket, onBytes: () => void, fromTarget = false) => {
    let last = 0;
    from.on('data', (chunk: Buffer) => {
      const cut = opts.dropReplies;
      if (fromTarget && cut !== undefined && stats.repliesDropped < cut.count && cut.match.test(chunk.toString('latin1'))) {
        stats.repliesDropped++;
        from.destroy();
        to.destroy();
        return;
      }
      const at = Math.max(Date.now() + delay(), last);
      last = at;
      setTimeout(() => {
        if (!to.destroyed) to.write(chunk);
        onBytes();
      }, at - Date.now());
    });
    from.on('end', () => setTimeout(() => to.end(), Math.max(0, last - Date.now())));
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
      if (opts.dropEvery !== undefined && n % opts.dropEvery === 0 && bytes === 3) {
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
    close: () =>
      new Promise((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}
