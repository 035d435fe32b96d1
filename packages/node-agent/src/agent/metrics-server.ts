import http from 'node:http';
import net from 'node:net';
import { AgentFlagError } from '../errors.js';
import type { Metrics } from './metrics.js';

/** /metrics on its own listener (loopback by default): process names and usage are for the operator. */
export async function serveMetrics(at: { host: string; port: number }, metrics: Metrics, refresh: () => Promise<unknown>): Promise<http.Server> {
  const loopback = /^(127\.|::1$|localhost$)/.test(at.host);
  const server = http.createServer((req, res) => {
    // On loopback, a Host that is a name is a web page that rebound its DNS name to 127.0.0.1.
    const host = (req.headers.host ?? '').replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
    if (loopback && net.isIP(host) === 0 && host !== 'localhost') {
      res.writeHead(403, { 'content-type': 'text/plain' });
      res.end('lowcloud agent: metrics on loopback answer only requests for an IP address or localhost\n');
      return;
    }
    if (req.url !== '/metrics' || req.method !== 'GET') {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('lowcloud agent: metrics at /metrics\n');
      return;
    }
    void refresh()
      .then(() => metrics.registry.metrics())
      .then(
        (text) => {
          res.writeHead(200, { 'content-type': metrics.registry.contentType });
          res.end(text);
        },
        (err: unknown) => {
          res.writeHead(500, { 'content-type': 'text/plain' });
          res.end(`metrics failed: ${err instanceof Error ? err.message : String(err)}\n`);
        },
      );
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 10_000;
  server.on('clientError', (_err, socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new AgentFlagError('--metrics-listen', `--metrics-listen ${at.host}:${at.port}: ${err.message} (give another address, or off)`)));
    server.listen(at.port, at.host, () => resolve());
  });
  server.on('error', (err) => process.stderr.write(`metrics listener error: ${err.message}\n`));
  return server;
}
