import fs from 'node:fs';
import path from 'node:path';
import { ErrorCode, parsePublicKey, parseSize } from '@lowcloud/api';
import type { AgentOptions } from './agent/agent-options.js';
import { AgentFlagError } from './errors.js';
import { DEFAULT_LOG_LIMITS, type LogLimits } from './agent/logs.js';
import { DEFAULT_BACKOFF } from './agent/supervisor.js';

export interface RawAgentFlags {
  listen: string;
  state: string;
  cache?: string;
  trust: string[];
  trustRead: string[];
  allowOrigin: string[];
  metricsListen: string;
  insecureLoopback?: boolean;
  logMaxBytes?: string;
  logKeep?: string;
  logTotal?: string;
  maxBlobSize?: string;
  connectRate?: string;
  connectBudget?: string;
  stateReserve?: string;
  allowUnwalled?: boolean;
  netns?: string;
  warmPool?: string;
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|localhost|::1)$/;

/** Validate the flags once, fill defaults; every error names the flag and the fix. */
export function compileAgentOptions(raw: RawAgentFlags, env: NodeJS.ProcessEnv = process.env): AgentOptions {
  const { host, port } = hostPort('--listen', raw.listen);
  if (raw.insecureLoopback === true && !LOOPBACK.test(host)) {
    throw new AgentFlagError('--insecure-loopback', `--insecure-loopback: plain ws:// is only allowed on loopback, not ${host}; drop the flag to serve wss://`);
  }
  const trusted = readKeys('--trust', raw.trust);
  const trustedRead = readKeys('--trust-read', raw.trustRead).filter((k) => !trusted.includes(k));
  const metrics = raw.metricsListen === 'off' ? null : hostPort('--metrics-listen', raw.metricsListen);
  for (const o of raw.allowOrigin) {
    if (!/^https?:\/\/[^/\s]+$/.test(o)) throw new AgentFlagError('--allow-origin', `--allow-origin ${o}: give an origin as a browser sends it, scheme://host[:port] with no path, e.g. https://ops.example.com`);
  }
  const logs = compileLogLimits(raw);
  if (raw.netns !== undefined && raw.netns !== 'veth' && raw.netns !== 'host' && raw.netns !== 'pasta') {
    throw new AgentFlagError('--netns', `--netns ${raw.netns}: write veth (one network namespace per network-granted guest host, over a veth pair: the default), pasta (one of its own, through pasta from Debian's passt) or host (the host's network namespace)`);
  }
  const connectRate = raw.connectRate === undefined ? undefined : Number(raw.connectRate);
  if (connectRate !== undefined && (!Number.isInteger(connectRate) || connectRate < 1 || connectRate > 100_000)) {
    throw new AgentFlagError('--connect-rate', `--connect-rate ${raw.connectRate}: write a whole number of new connections per second per client address, from 1 to 100000`);
  }
  const connectBudget = raw.connectBudget === undefined ? undefined : Number(raw.connectBudget);
  if (connectBudget !== undefined && (!Number.isInteger(connectBudget) || connectBudget < 1 || connectBudget > 100_000)) {
    throw new AgentFlagError('--connect-budget', `--connect-budget ${raw.connectBudget}: write a whole number of new connections per second for the whole agent, from 1 to 100000`);
  }
  const warmPool = raw.warmPool === undefined ? undefined : Number(raw.warmPool);
  if (warmPool !== undefined && (!/^\d+$/.test(raw.warmPool ?? '') || warmPool > 64)) {
    throw new AgentFlagError('--warm-pool', `--warm-pool ${raw.warmPool}: write how many warm guest hosts to keep, a whole number from 0 (none) to 64`);
  }
  const maxBlobBytes = raw.maxBlobSize === undefined ? undefined : parseSize(raw.maxBlobSize, '--max-blob-size');
  if (maxBlobBytes !== undefined && maxBlobBytes < 1) throw new AgentFlagError('--max-blob-size', `--max-blob-size ${raw.maxBlobSize}: must be at least 1B`);
  const stateReserveBytes = raw.stateReserve === undefined ? undefined : parseSize(raw.stateReserve, '--state-reserve');
  const diskMs = env.LOWCLOUD_DISK_INTERVAL_MS === undefined ? undefined : Number(env.LOWCLOUD_DISK_INTERVAL_MS);
  const base = env.LOWCLOUD_BACKOFF_BASE_MS === undefined ? undefined : Number(env.LOWCLOUD_BACKOFF_BASE_MS);
  // Tests of the send budget hold readers that never read: past two heartbeats they are dropped for that instead.
  const heartbeat = env.LOWCLOUD_TEST_HEARTBEAT_MS === undefined ? undefined : Number(env.LOWCLOUD_TEST_HEARTBEAT_MS);
  const heartbeatMs = heartbeat !== undefined && Number.isInteger(heartbeat) && heartbeat >= 100 ? heartbeat : undefined;
  return {
    host,
    port,
    stateDir: raw.state,
    ...(raw.cache === undefined ? {} : { cacheDir: path.resolve(raw.cache) }),
    trusted,
    trustedRead,
    allowedOrigins: raw.allowOrigin,
    metrics,
    insecureLoopback: raw.insecureLoopback === true,
    logs,
    ...(raw.allowUnwalled === true ? { allowUnwalled: true } : {}),
    ...(raw.netns === 'pasta' || raw.netns === 'host' ? { netns: raw.netns } : {}),
    ...(warmPool === undefined ? {} : { warmPool }),
    ...(maxBlobBytes === undefined ? {} : { maxBlobBytes }),
    ...(stateReserveBytes === undefined ? {} : { stateReserveBytes }),
    ...(connectRate === undefined && connectBudget === undefined && heartbeatMs === undefined
      ? {}
      : {
          limits: {
            ...(connectRate === undefined ? {} : { connectsPerSecondPerAddress: connectRate }),
            ...(connectBudget === undefined ? {} : { connectsPerSecond: connectBudget }),
            ...(heartbeatMs === undefined ? {} : { heartbeatMs }),
          },
        }),
    ...(diskMs === undefined || !Number.isFinite(diskMs) || diskMs < 0 ? {} : { diskIntervalMs: diskMs }),
    ...(base === undefined || !Number.isFinite(base) ? {} : { backoff: { ...DEFAULT_BACKOFF, baseMs: base, maxMs: Math.max(base, base * 30) } }),
  };
}

function compileLogLimits(raw: RawAgentFlags): LogLimits {
  const maxBytes = raw.logMaxBytes === undefined ? DEFAULT_LOG_LIMITS.maxBytes : parseSize(raw.logMaxBytes, '--log-max-bytes');
  const keep = raw.logKeep === undefined ? DEFAULT_LOG_LIMITS.keep : Number(raw.logKeep);
  const totalBytes = raw.logTotal === undefined ? DEFAULT_LOG_LIMITS.totalBytes : parseSize(raw.logTotal, '--log-total');
  if (maxBytes < 1) throw new AgentFlagError('--log-max-bytes', `--log-max-bytes ${raw.logMaxBytes}: must be at least 1B`);
  if (!Number.isInteger(keep) || keep < 0 || keep > 100) throw new AgentFlagError('--log-keep', `--log-keep ${raw.logKeep}: write a whole number of rotated files from 0 to 100`);
  if (totalBytes < maxBytes) throw new AgentFlagError('--log-total', `--log-total ${raw.logTotal}: must be at least --log-max-bytes (${maxBytes} bytes)`);
  return { maxBytes, keep, totalBytes };
}

function hostPort(flag: string, value: string): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(value);
  if (m === null) throw new AgentFlagError(flag, `${flag} ${value}: write HOST:PORT, e.g. 0.0.0.0:7443 or 127.0.0.1:0`);
  const port = Number(m[2]);
  if (port > 65535) throw new AgentFlagError(flag, `${flag} ${value}: port ${port} is out of range`);
  return { host: (m[1] as string).replace(/^\[|\]$/g, ''), port };
}

/** Public keys from flags: each an ed25519:... key or a file of them, one a line (# comments). */
function readKeys(flag: string, values: string[]): string[] {
  const keys: string[] = [];
  for (const t of values) {
    const text = t.startsWith('ed25519:') ? t : readTrustFile(flag, t);
    for (const line of text.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'))) {
      parsePublicKey(line, `${flag} ${t}`);
      keys.push(line);
    }
  }
  return keys;
}

function readTrustFile(flag: string, file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    throw new AgentFlagError(flag, `${flag} ${file}: cannot read it; give a .pub file made by \`lowcloud keygen\` or an ed25519:... key`, ErrorCode.FILE_NOT_FOUND);
  }
}
