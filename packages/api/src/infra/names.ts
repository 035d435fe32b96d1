import net from 'node:net';
import { InvalidConnectTargetError, type Diagnostic } from '../errors.js';
import { connectList, parseConnectTarget, type ConnectTarget } from '../grants/network.js';
import type { ProcessSpec } from '../spec.js';
import type { ParsedInfra } from './parse.js';
import { closest } from './parse.js';
import { resolvedSpecDigest } from './spec-digest.js';
import type { MachineEntry } from './types.js';

/**
 * Processes find each other by name: `kv-a:7101` in a grant's connect list, `${kv-a:7101}` in args
 * and env. The planner resolves both here, against the file alone, to the address of the machine
 * kv-a runs on, so what reaches an agent carries addresses and the agent needs no global view.
 * `${map-a:digest}` is the spec digest of map-a: a process that consumes map-a's output names it,
 * so it restarts whenever map-a does (its args change with map-a's spec).
 */

/** How other machines reach a machine's processes: `address:`, else the host of its agent URL; `local` machines are this computer. */
export function machineAddress(m: MachineEntry): string {
  if (m.address !== undefined) return canonicalAddress(m.address);
  if (m.agent === 'local') return '127.0.0.1';
  const host = new URL(m.agent).hostname.replace(/^\[|\]$/g, '');
  return host === 'localhost' ? '127.0.0.1' : canonicalAddress(host);
}

/** An IP address in its canonical form, or a host name in lower case; null when it is neither. */
export function parseAddress(text: string): string | null {
  try {
    const t = parseConnectTarget(net.isIPv6(text) ? `[${text}]:1` : `${text}:1`);
    return t.kind === 'address' ? t.ip : t.kind === 'host' ? t.name : null;
  } catch {
    return null;
  }
}

function canonicalAddress(text: string): string {
  return parseAddress(text) ?? text;
}

/** `address:port` as a connect target, args and env write it (IPv6 in brackets). */
export function hostPort(address: string, port: number): string {
  return `${address.includes(':') ? `[${address}]` : address}:${port}`;
}

/** A reference `${name:port}` or `${name:digest}` inside an args or env value. */
const REF_RE = /\$\{([a-z0-9][a-z0-9._-]{0,62}):([0-9]{1,5}|digest)\}/g;

interface Target {
  machine: string;
  listen: number[];
}

/** Resolves the names of one infra file; problems go to `diags` at the field that holds them. */
export class NameResolver {
  /** Connect target text -> its canonical text, for targets that name no process. */
  private readonly plainTargets = new Map<string, string>();
  /** Whether an args or env value names a digest (`${name:digest}`): only then has `fillDigests` work to do. */
  namesDigests = false;

  constructor(
    private readonly parsed: ParsedInfra,
    private readonly addresses: ReadonlyMap<string, string>,
  ) {}

  /**
   * The process `name` as a target, looked up in the file's own mapping when a name is resolved:
   * a table of every process built up front cost ~0.2 s at 100,000 processes, most of whose names no
   * connect target or reference ever names.
   */
  private target(name: string): Target | undefined {
    const processes = this.parsed.value.processes;
    const p = processes !== undefined && Object.hasOwn(processes, name) ? processes[name] : undefined;
    return p === undefined ? undefined : { machine: p.machine, listen: p.grants?.network?.listen ?? [] };
  }

  private processNames(): string[] {
    return Object.keys(this.parsed.value.processes ?? {});
  }

  /** Does this host name of a connect target mean a process of the file? Single-label names always do. */
  private meansProcess(host: string): boolean {
    return this.target(host) !== undefined || (!host.includes('.') && host !== 'localhost');
  }

  /**
   * The address:port of process `name`, port `port`, or null after a diagnostic at `path` (no such
   * process, or it does not listen on that port). `what` is the text as written.
   */
  private resolve(name: string, port: number, what: string, path: (string | number)[], diags: Diagnostic[], inGrant = false): string | null {
    const t = this.target(name);
    if (t === undefined) {
      const guess = closest(name, this.processNames());
      diags.push(
        this.parsed.at(
          path,
          `"${what}" names no process of this file`,
          [guess === null ? 'name a process under processes' : `did you mean "${guess}"?`, ...(inGrant ? ['a host outside the file needs a dotted name (db.internal:5432) or an IP address'] : [])].join('; '),
        ),
      );
      return null;
    }
    if (!t.listen.includes(port)) {
      diags.push(
        this.parsed.at(
          path,
          `"${what}": ${name} does not listen on port ${port} (${t.listen.length === 0 ? 'it listens on no port' : `it listens on ${t.listen.join(', ')}`})`,
          `use one of its listen ports, or add ${port} to processes.${name}.grants.network.listen`,
        ),
      );
      return null;
    }
    return this.addresses.get(t.machine) ?? null;
  }

  /** A grant's connect list: named processes resolved to name@address:port, all canonical, sorted and distinct. */
  connect(texts: readonly string[], field: () => (string | number)[], diags: Diagnostic[]): string[] {
    const out: ConnectTarget[] = [];
    // A target that names no process reads the same in every process: parsed once (a fleet's
    // processes mostly share theirs; at 100,000 processes parsing each was 0.25 s).
    if (texts.length === 1) {
      const known = this.plainTargets.get(texts[0] as string);
      if (known !== undefined) return [known];
    }
    const path = field();
    texts.forEach((text, i) => {
      let t: ConnectTarget;
      try {
        t = parseConnectTarget(text, [...path, i].join('.'));
      } catch (err) {
        if (!(err instanceof InvalidConnectTargetError)) throw err;
        diags.push(this.parsed.at([...path, i], `"${text}" ${err.reason}`, err.hint));
        return;
      }
      if (t.kind === 'host' && this.meansProcess(t.name)) {
        const address = this.resolve(t.name, t.port, text, [...path, i], diags, true);
        if (address === null) return;
        t = { kind: 'process', name: t.name, port: t.port, address };
      } else if (texts.length === 1) {
        this.plainTargets.set(text, connectList([t])[0] as string);
      }
      out.push(t);
    });
    return connectList(out);
  }

  /** `${name:port}` in an args or env value, replaced by the address:port it resolves to; `${name:digest}` left for `digests`. */
  substitute(text: string, path: () => (string | number)[], diags: Diagnostic[]): string {
    // Most values name nothing: no regular expression run, no path built.
    if (!text.includes('${')) return text;
    return text.replace(REF_RE, (whole, name: string, port: string) => {
      if (port === 'digest') {
        this.namesDigests = true;
        if (this.target(name) === undefined) this.resolve(name, 0, whole, path(), diags);
        return whole;
      }
      const address = this.resolve(name, Number(port), whole, path(), diags);
      return address === null ? whole : hostPort(address, Number(port));
    });
  }
}

/** A process as `fillDigests` needs it: its spec, and its digest, recomputed here when refs change the spec. */
interface Digestible {
  spec: ProcessSpec;
  digest: string;
}

/**
 * Replace every `${name:digest}` with the final spec digest of that process, in dependency order
 * (a process's digest covers the digests it names), and recompute the digests of the processes
 * that had one. A cycle is a diagnostic: no order could give each process its inputs' digests.
 */
export function fillDigests<P extends Digestible>(processes: Record<string, P>, parsed: ParsedInfra, diags: Diagnostic[]): void {
  const refs = (p: P) => {
    const out: string[] = [];
    const scan = (s: string) => {
      if (s.includes(':digest}')) for (const m of s.matchAll(REF_RE)) if (m[2] === 'digest') out.push(m[1] as string);
    };
    for (const a of p.spec.args) scan(a);
    for (const v of Object.values(p.spec.env)) scan(v);
    return out;
  };
  const done = new Set<string>();
  const visiting = new Set<string>();
  const visit = (name: string, chain: string[]): void => {
    const p = processes[name];
    if (p === undefined || done.has(name)) return;
    if (visiting.has(name)) {
      const cycle = [...chain.slice(chain.indexOf(name)), name];
      diags.push(parsed.at(['processes', name, 'args'], `\${...:digest} references form a cycle: ${cycle.join(' -> ')}`, 'a process can only name the digests of processes that do not name its own'));
      done.add(name);
      return;
    }
    const needs = refs(p);
    if (needs.length === 0) {
      done.add(name);
      return;
    }
    visiting.add(name);
    for (const n of needs) visit(n, [...chain, name]);
    visiting.delete(name);
    const fill = (s: string) => s.replace(REF_RE, (whole, ref: string, kind: string) => (kind === 'digest' ? (processes[ref]?.digest ?? whole) : whole));
    p.spec.args = p.spec.args.map(fill);
    p.spec.env = Object.fromEntries(Object.entries(p.spec.env).map(([k, v]) => [k, fill(v)]));
    p.digest = resolvedSpecDigest(p.spec);
    done.add(name);
  };
  for (const name of Object.keys(processes)) visit(name, []);
}
