import { createHash, hash } from 'node:crypto';
import { canonicalJson } from '../digest.js';
import type { ProcessSpec } from '../spec.js';

/**
 * specDigest of a spec that resolve.ts built: the same canonical JSON, written by a writer that
 * knows the spec's shape (sorted field names spelled out) instead of sorting every object's keys.
 * At 100,000 processes the generic writer was the largest cost of resolving after parsing.
 * spec-digest.test.ts checks it against canonicalJson.
 */
export function resolvedSpecDigest(spec: ProcessSpec, parts?: SpecParts): string {
  return sha256(resolvedSpecJson(spec, parts));
}

/**
 * The JSON of a spec's grants, env and config, kept by object: resolve.ts gives the processes whose
 * file blocks are one (block-read.ts reads a repeated block once) the same resolved objects, and
 * their text is then written once. Only objects it is told are shared are kept (a file whose blocks
 * do not repeat costs a lookup a part), and only objects that do not change while it is in use.
 */
export class SpecParts {
  private readonly texts = new Map<object, string | undefined>();

  /** `part` may be in several specs: its text is kept once written. */
  shared(part: object): void {
    this.texts.set(part, undefined);
  }

  /** The text of `part` as `write` writes it, written once where `part` is shared. */
  of<T extends object>(part: T, write: (part: T) => string): string {
    const text = this.texts.get(part);
    if (text !== undefined) return text;
    const written = write(part);
    if (this.texts.has(part)) this.texts.set(part, written);
    return written;
  }
}

/** canonicalJson(spec) for the shape resolve.ts builds (fields it leaves out are absent, never undefined). */
export function resolvedSpecJson(spec: ProcessSpec, parts?: SpecParts): string {
  const grants = parts === undefined ? grantsJson(spec.grants) : parts.of(spec.grants, grantsJson);
  const env = parts === undefined ? record(spec.env) : parts.of(spec.env, record);
  const config = parts === undefined ? record(spec.config) : parts.of(spec.config, record);
  return (
    `{${spec.allowUnwalled === undefined ? '' : `"allowUnwalled":${JSON.stringify(spec.allowUnwalled)},`}"args":${JSON.stringify(spec.args)},"binary":${JSON.stringify(spec.binary)},"config":${config},"env":${env},` +
    `"grants":${grants},${spec.isolation === undefined ? '' : `"isolation":${JSON.stringify(spec.isolation)},`}"name":${JSON.stringify(spec.name)},"restart":${JSON.stringify(spec.restart)}}`
  );
}

function grantsJson(g: ProcessSpec['grants']): string {
  const n = g.network;
  let grants = '{';
  if (g.cpu !== undefined) grants += `"cpu":${JSON.stringify(g.cpu)},`;
  if (g.disk !== undefined) grants += `"disk":${JSON.stringify(g.disk)},`;
  if (g.gpu !== undefined) {
    grants += `"gpu":{"memory":${JSON.stringify(g.gpu.memory)}${g.gpu.submitSeconds === undefined ? '' : `,"submitSeconds":${JSON.stringify(g.gpu.submitSeconds)}`}},`;
  }
  if (g.memory !== undefined) grants += `"memory":${JSON.stringify(g.memory)},`;
  return `${grants}"network":{"connect":${JSON.stringify(n.connect)},"listen":${JSON.stringify(n.listen)}${n.udp === undefined ? '' : `,"udp":${JSON.stringify(n.udp)}`}}}`;
}

const INDEX = /^(?:0|[1-9][0-9]*)$/;

/** A record of strings with sorted keys; canonicalJson decides where a key looks like an array index. */
function record(r: Record<string, string>): string {
  const keys = Object.keys(r);
  if (keys.length === 0) return '{}';
  if (keys.length > 1) keys.sort();
  let out = '{';
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i] as string;
    if (INDEX.test(k)) return canonicalJson(r);
    out += `${i === 0 ? '' : ','}${JSON.stringify(k)}:${JSON.stringify(r[k])}`;
  }
  return `${out}}`;
}

/** sha256 hex; the one-shot `crypto.hash` skips the Hash object (Node.js 20.12 and later). */
const sha256: (text: string) => string =
  typeof hash === 'function' ? (text) => hash('sha256', text, 'hex') : (text) => createHash('sha256').update(text).digest('hex');
