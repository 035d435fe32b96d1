import { ErrorCode, LowcloudError } from './errors.js';

const SIZE_UNITS: Record<string, number> = {
  B: 1,
  KB: 1e3,
  MB: 1e6,
  GB: 1e9,
  TB: 1e12,
  KiB: 2 ** 10,
  MiB: 2 ** 20,
  GiB: 2 ** 30,
  TiB: 2 ** 40,
};
const SIZE_RE = /^(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)$/;

/**
 * Parse a size such as `64MiB`, `1GiB`, `500KB` or `100B` into bytes. A bare number is rejected:
 * `64` could mean bytes or MiB, and guessing wrong silently is how grants end up 1000x off.
 */
export function parseSize(text: string | number, field = 'size'): number {
  const s = String(text).trim();
  const m = SIZE_RE.exec(s);
  if (m === null) {
    const bare = /^\d+(\.\d+)?$/.test(s);
    throw new LowcloudError(
      ErrorCode.INVALID_SIZE,
      bare
        ? `${field}: "${s}" has no unit; write ${s}MiB, ${s}KiB or ${s}B`
        : `${field}: "${s}" is not a size; use a number with B, KB, MB, GB, KiB, MiB or GiB (e.g. 64MiB)`,
      { details: { field, value: s } },
    );
  }
  const bytes = Number(m[1]) * (SIZE_UNITS[m[2] as string] as number);
  if (!Number.isSafeInteger(Math.round(bytes))) {
    throw new LowcloudError(ErrorCode.INVALID_SIZE, `${field}: "${s}" is too large`, { details: { field, value: s } });
  }
  return Math.round(bytes);
}

/** Render bytes the way a person would write them in an infra file (binary units). */
export function formatSize(bytes: number): string {
  for (const unit of ['TiB', 'GiB', 'MiB', 'KiB'] as const) {
    const n = bytes / (SIZE_UNITS[unit] as number);
    if (n >= 1 && Number.isInteger(n * 100)) return `${n}${unit}`;
    if (n >= 1) return `${n.toFixed(1)}${unit}`;
  }
  return `${bytes}B`;
}

/** Parse CPU in cores: `0.5`, `2`, or millicores `500m`. */
export function parseCpu(text: string | number, field = 'cpu'): number {
  const s = String(text).trim();
  let cores: number;
  if (/^\d+m$/.test(s)) cores = Number(s.slice(0, -1)) / 1000;
  else if (/^\d+(\.\d+)?$/.test(s)) cores = Number(s);
  else cores = Number.NaN;
  if (!Number.isFinite(cores) || cores <= 0) {
    throw new LowcloudError(
      ErrorCode.INVALID_CPU,
      `${field}: "${s}" is not a CPU amount; use cores such as 0.25, 0.5 or 2 (or millicores like 500m)`,
      { details: { field, value: s } },
    );
  }
  return cores;
}
