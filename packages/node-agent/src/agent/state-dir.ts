import fs from 'node:fs';
import path from 'node:path';
import { AgentFlagError } from '../errors.js';

/**
 * The state directory holds the agent's keys, every process's env values (state.json), blobs and
 * logs: 0700, and the agent's own files 0600. A directory made looser (e.g. by `mkdir -p` under
 * umask 022) is tightened at start, and the log says so. Links are never followed.
 *
 * Blobs and admitted binaries stay 0644 inside their 0700 directories: each guest host reads its
 * own through a bind mount in its wall, as its own uid.
 */
const PRIVATE_FILES = ['state.json', 'agent.key', 'tls.key', 'tls.crt', 'agent.pub', 'audit.log', 'uids.json'];
const PRIVATE_DIRS = ['', 'blobs', 'cache', 'logs', 'run', 'data'];

export function secureStateDir(dir: string, log: (line: string) => void): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tightened: string[] = [];
  const tighten = (p: string, mode: number) => {
    let st: fs.Stats;
    try {
      st = fs.lstatSync(p);
    } catch {
      return; // not made yet: made with the right mode when it is
    }
    if (st.isSymbolicLink() || (st.mode & 0o777 & ~mode) === 0) return;
    fs.chmodSync(p, mode & st.mode);
    tightened.push(`${path.relative(dir, p) || '.'} ${(st.mode & 0o777).toString(8)} -> ${(mode & st.mode & 0o777).toString(8)}`);
  };
  for (const d of PRIVATE_DIRS) tighten(path.join(dir, d), 0o700);
  for (const f of PRIVATE_FILES) tighten(path.join(dir, f), 0o600);
  for (const sub of ['run']) {
    let names: string[] = [];
    try {
      names = fs.readdirSync(path.join(dir, sub));
    } catch {
      continue; // no processes yet
    }
    for (const n of names) tighten(path.join(dir, sub, n), 0o700);
  }
  if (tightened.length > 0) log(`lowcloud agent: state directory ${dir} was readable by others; tightened ${tightened.join(', ')}`);
}

/**
 * A `--cache` directory outside the state directory: the guest hosts run what it holds, so it is
 * made 0700 and must be a real directory of this agent's user that nobody else can write (agents of
 * one computer, one operator, may share it). Anything else is refused, naming the flag.
 */
export function secureCacheDir(dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = fs.lstatSync(dir);
  const uid = process.getuid?.() ?? st.uid;
  const why = st.isSymbolicLink() ? 'is a symbolic link' : !st.isDirectory() ? 'is not a directory' : st.uid !== uid ? `belongs to uid ${st.uid}, not this agent's (${uid})` : (st.mode & 0o022) !== 0 ? `is writable by others (mode ${(st.mode & 0o777).toString(8)})` : null;
  if (why !== null) throw new AgentFlagError('--cache', `--cache ${dir} ${why}: the guests run what it holds; give a directory of this user, mode 0700 (or drop --cache for <state>/cache)`);
}
