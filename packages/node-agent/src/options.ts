import fs from 'node:fs';
import { ErrorCode, LowcloudError, parsePublicKey } from '@lowcloud/api';
import type { AgentOptions } from './agent/agent.js';
import { DEFAULT_BACKOFF } from './agent/supervisor.js';

export interface RawAgentFlags {
  listen: string;
  state: string;
  trust: string[];
  insecureLoopback?: boolean;
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|localhost|::1)$/;

/** Validate the flags once, fill defaults; every error names the flag and the fix. */
export function compileAgentOptions(raw: RawAgentFlags, env: NodeJS.ProcessEnv = process.env): AgentOptions {
  const m = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(raw.listen);
  if (m === null) throw new LowcloudError(ErrorCode.INVALID_INPUT, `--listen ${raw.listen}: write HOST:PORT, e.g. 0.0.0.0:7443 or 127.0.0.1:0`);
  const host = (m[1] as string).replace(/^\[|\]$/g, '');
  const port = Number(m[2]);
  if (port > 65535) throw new LowcloudError(ErrorCode.INVALID_INPUT, `--listen ${raw.listen}: port ${port} is out of range`);
  if (raw.insecureLoopback === true && !LOOPBACK.test(host)) {
    throw new LowcloudError(ErrorCode.INVALID_INPUT, `--insecure-loopback: plain ws:// is only allowed on loopback, not ${host}; drop the flag to serve wss://`);
  }
  const trusted: string[] = [];
  for (const t of raw.trust) {
    const text = t.startsWith('ed25519:') ? t : readTrustFile(t);
    for (const line of text.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'))) {
      parsePublicKey(line, `--trust ${t}`);
      trusted.push(line);
    }
  }
  const base = env.LOWCLOUD_BACKOFF_BASE_MS === undefined ? undefined : Number(env.LOWCLOUD_BACKOFF_BASE_MS);
  return {
    host,
    port,
    stateDir: raw.state,
    trusted,
    insecureLoopback: raw.insecureLoopback === true,
    ...(base === undefined || !Number.isFinite(base) ? {} : { backoff: { ...DEFAULT_BACKOFF, baseMs: base, maxMs: Math.max(base, base * 30) } }),
  };
}

function readTrustFile(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    throw new LowcloudError(ErrorCode.FILE_NOT_FOUND, `--trust ${file}: cannot read it; give a .pub file made by \`lowcloud keygen\` or an ed25519:... key`);
  }
}
