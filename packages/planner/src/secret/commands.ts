import fs from 'node:fs';
import path from 'node:path';
import {
  ErrorCode,
  isSealed,
  LowcloudError,
  parseInfra,
  parsePrivateKey,
  parseSealed,
  WorkingTreeSource,
  type InfraFile,
  type ParsedInfra,
} from '@lowcloud/api';
import { openSealed, sealValue } from '@lowcloud/api/secrets';
import { own } from '../own.js';

/**
 * `lowcloud secret seal` and `reseal`: the operator's side of sealed secrets. Sealing needs only the
 * key the file pins for a machine, so it works anywhere (a laptop, CI) with no agent reachable.
 */

function readInfra(file: string): ParsedInfra {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new LowcloudError(ErrorCode.FILE_NOT_FOUND, `${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found' : String(err)}`);
  }
  return parseInfra(text, file);
}

/** The key a machine pins; the error says how to pin one. */
export function machineKey(value: InfraFile, machine: string, file: string): string {
  const m = own(value.machines, machine);
  if (m === undefined) {
    throw new LowcloudError(ErrorCode.INVALID_INPUT, `${file}: no machine "${machine}" (machines: ${Object.keys(value.machines).join(', ')})`);
  }
  if (m.key === undefined) {
    throw new LowcloudError(
      ErrorCode.INVALID_INPUT,
      `${file}: machine ${machine} pins no key, so nothing can be sealed to it; add key: ed25519:... as its agent prints it (a local agent's is in .lowcloud/agents/${machine}/state/agent.pub next to the file once \`lowcloud up\` started it)`,
    );
  }
  return m.key;
}

export interface SealFlags {
  machine: string;
  file?: string;
}

/**
 * The sealed string for a plaintext from `--file` (bytes as they are) or standard input (one
 * trailing newline dropped: `echo pw |` seals `pw`).
 */
export function seal(infraFile: string, flags: SealFlags, stdin: Buffer): string {
  const key = machineKey(readInfra(infraFile).value, flags.machine, infraFile);
  let plain: Buffer;
  if (flags.file !== undefined) {
    try {
      plain = fs.readFileSync(flags.file);
    } catch (err) {
      throw new LowcloudError(ErrorCode.FILE_NOT_FOUND, `--file ${flags.file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found' : String(err)}`);
    }
  } else {
    plain = stdin.subarray(0, stdin.length - (stdin.subarray(-2).toString() === '\r\n' ? 2 : stdin.subarray(-1).toString() === '\n' ? 1 : 0));
    if (plain.length === 0) throw new LowcloudError(ErrorCode.INVALID_INPUT, 'nothing to seal: standard input was empty (pipe the value in, or use --file)');
  }
  return sealValue(plain, key);
}

/** One sealed value of the machine that is not sealed to the key the file pins now. */
interface Stale {
  /** `processes.kv.env.DB_PASSWORD` or `processes.kv.config./etc/app.toml (config/app.toml.sealed)`. */
  where: string;
  text: string;
  recipient: string;
  /** Config files: the path relative to the infra file. */
  file?: string;
}

async function staleValues(infraFile: string, parsed: ParsedInfra, machine: string, key: string): Promise<Stale[]> {
  const source = await WorkingTreeSource.open(path.dirname(path.resolve(infraFile)));
  const out: Stale[] = [];
  const consider = (where: string, text: string, file?: string) => {
    const v = parseSealed(text); // validate's own check: a malformed one is reported there too
    if (v.recipient !== key) out.push({ where, text: v.text, recipient: v.recipient, ...(file === undefined ? {} : { file }) });
  };
  for (const [name, p] of Object.entries(parsed.value.processes ?? {}).sort(([a], [b]) => (a < b ? -1 : 1))) {
    if (p.machine !== machine) continue;
    for (const [k, v] of Object.entries(p.env ?? {})) if (isSealed(v)) consider(`processes.${name}.env.${k}`, v);
    for (const [guest, file] of Object.entries(p.config ?? {})) {
      const r = await source.read(file);
      if (r.kind !== 'file') throw new LowcloudError(ErrorCode.FILE_NOT_FOUND, `processes.${name}.config.${guest}: ${r.reason}`);
      const text = Buffer.from(r.bytes).toString('utf8');
      if (isSealed(text)) consider(`processes.${name}.config.${guest} (${file})`, text, file);
    }
  }
  return out;
}

/**
 * Re-seal every sealed value of a machine's processes that is not sealed to the key the file pins
 * for it now (after the operator re-keyed the agent and pinned its new key). With `--old-key` (the
 * previous agent.key) each is opened here and sealed to the new key, in place: the infra file keeps
 * every other byte, sealed config files are rewritten. Without it, nothing is changed and the list
 * says what to seal again from its source.
 */
export async function reseal(infraFile: string, flags: { machine: string; oldKey?: string }, log: (s: string) => void): Promise<void> {
  const parsed = readInfra(infraFile);
  const key = machineKey(parsed.value, flags.machine, infraFile);
  const stale = await staleValues(infraFile, parsed, flags.machine, key);
  if (stale.length === 0) {
    log(`Every sealed value of machine ${flags.machine} is sealed to its pinned key ${key}; nothing to do.`);
    return;
  }
  if (flags.oldKey === undefined) {
    throw new LowcloudError(
      ErrorCode.SECRET_WRONG_MACHINE,
      `${stale.length} sealed value(s) of machine ${flags.machine} are not sealed to its pinned key ${key}:\n${stale.map((s) => `  ${s.where}: sealed to ${s.recipient}`).join('\n')}\nGive the previous agent key to re-seal them here (--old-key /var/lib/lowcloud/agent.key.old), or seal each again from its plaintext: lowcloud secret seal --machine ${flags.machine} ${infraFile}. Nothing was changed.`,
    );
  }
  const old = parsePrivateKey(fs.readFileSync(flags.oldKey, 'utf8'), flags.oldKey);
  const foreign = stale.filter((s) => s.recipient !== old.publicKey);
  if (foreign.length > 0) {
    throw new LowcloudError(
      ErrorCode.SECRET_WRONG_MACHINE,
      `${foreign.length} sealed value(s) are sealed to neither the pinned key nor the old key ${old.publicKey}, so they cannot be re-sealed here:\n${foreign.map((s) => `  ${s.where}: sealed to ${s.recipient}`).join('\n')}\nSeal each again from its plaintext: lowcloud secret seal --machine ${flags.machine} ${infraFile}. Nothing was changed.`,
    );
  }
  // Open everything before writing anything: one value that does not open changes no file.
  const fresh = stale.map((s) => ({ ...s, sealed: sealValue(openSealed(s.text, old), key) }));
  let yaml = fs.readFileSync(infraFile, 'utf8');
  const files = new Map<string, string>();
  for (const s of fresh) {
    if (s.file !== undefined) files.set(path.resolve(path.dirname(path.resolve(infraFile)), s.file), `${s.sealed}\n`);
    else yaml = yaml.split(s.text).join(s.sealed);
  }
  for (const [file, text] of files) writeAtomic(file, text);
  writeAtomic(infraFile, yaml);
  log(`Re-sealed ${fresh.length} value(s) of machine ${flags.machine} to ${key}:\n${fresh.map((s) => `  ${s.where}`).join('\n')}\nCommit them; the plan replaces exactly the processes that use them (reason: secret-changed).`);
}

function writeAtomic(file: string, text: string): void {
  const tmp = `${file}.reseal-${process.pid}`;
  const mode = fs.existsSync(file) ? fs.statSync(file).mode & 0o777 : 0o644;
  fs.writeFileSync(tmp, text, { mode });
  fs.renameSync(tmp, file);
}
