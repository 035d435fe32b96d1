import net from 'node:net';
import { ErrorCode, InvalidConnectTargetError, LowcloudError } from '../errors.js';
import type { NetworkGrant } from '../spec.js';

/**
 * One target a network grant lets a process connect to, parsed once from its text form.
 *
 * On the wire, in an agent's state and in plan documents a target is its canonical text
 * (`formatConnectTarget`), and a grant's list is sorted and de-duplicated (`normalizeConnect`):
 * one grant has exactly one spelling, so its spec digest never depends on how it was written.
 */
export type ConnectTarget =
  /** One address: `10.0.0.6:5432`, `[fd00::6]:5432`. `ip` is in canonical form. */
  | { kind: 'address'; family: 4 | 6; ip: string; port: number }
  /** A network: `10.0.0.0/8:5432`, `[fd00::]/8:5432`. `ip` is the network address (host bits zero). */
  | { kind: 'cidr'; family: 4 | 6; ip: string; prefix: number; port: number }
  /** A host name, looked up when the guest starts: `db.internal:5432` (lower case). */
  | { kind: 'host'; name: string; port: number }
  /**
   * A process of the infra file, by name (`kv-a:7101` in the file). The planner resolves it to the
   * address of the machine it runs on (`address`: an IP address or a host name) before anything
   * reaches an agent; resolved, its text is `kv-a@10.0.0.5:7101`. The guest may connect to that
   * address and port, and a lookup of the name gives it that address.
   */
  | { kind: 'process'; name: string; port: number; address?: string };

export type ConnectTargetKind = ConnectTarget['kind'];

/** The accepted forms, for every message that refuses a target. */
export const CONNECT_FORMS = 'ip:port (10.0.0.6:5432), [ipv6]:port ([fd00::6]:5432), cidr:port (10.0.0.0/8:5432) or host:port (db.internal:5432)';

/**
 * A JSON Schema pattern that admits every text `parseConnectTarget` may accept (it refuses the rest,
 * with the reason): host or IPv4 address with an optional prefix, or a bracketed IPv6 address.
 */
export const CONNECT_PATTERN = '^(\\[[0-9a-fA-F:.]+\\](/[0-9]{1,3})?|[A-Za-z0-9.-]+(/[0-9]{1,2})?):[0-9]{1,5}$';

/** The network grant as the sandbox enforces it: connect targets parsed, sorted and distinct. */
export interface NetworkAccess {
  listen: number[];
  connect: ConnectTarget[];
  udp: boolean;
}

const TARGET_RE = /^(?:\[([^\]]*)\]|([^:/[\]]*))(?:\/([0-9]+))?:([0-9]+)$/;
/** A process name as the infra file allows it. */
const PROCESS_RE = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const LABEL_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * Parse one connect target. `field` names where it came from (`--connect`,
 * `processes.kv.grants.network.connect.0`); the error names it, the reason and the accepted forms.
 */
export function parseConnectTarget(text: string, field = 'connect'): ConnectTarget {
  const fail = (why: string) => new InvalidConnectTargetError(field, text, why, `use ${CONNECT_FORMS}`);
  const at = text.indexOf('@');
  if (at >= 0) {
    // A resolved process target: name@address:port, as the planner writes it.
    const name = text.slice(0, at);
    if (!PROCESS_RE.test(name)) throw fail(`has "${name}" before "@", which is not a process name`);
    const where = parseConnectTarget(text.slice(at + 1), field);
    if (where.kind === 'cidr' || where.kind === 'process') throw fail('has a network or a process after "@"; a resolved process target is name@address:port');
    const address = where.kind === 'host' ? where.name : where.ip;
    return { kind: 'process', name, port: where.port, address };
  }
  const m = TARGET_RE.exec(text);
  if (m === null) {
    if (net.isIPv6(text) || net.isIPv6(text.replace(/:[0-9]+$/, ''))) throw fail('is an IPv6 address without brackets or port');
    if (!text.includes(':')) throw fail('has no port');
    throw fail('is not a connect target');
  }
  const [, bracketed, bare, prefixText, portText] = m as unknown as [string, string | undefined, string | undefined, string | undefined, string];
  const port = Number(portText);
  if (portText.length > 5 || port < 1 || port > 65535) throw fail(`has port ${portText}, outside 1-65535`);
  if (bracketed !== undefined) {
    if (bracketed.includes('%')) throw fail('has a zone index; a grant names addresses, not interfaces');
    if (!net.isIPv6(bracketed)) throw fail(`has "${bracketed}" in brackets, which is not an IPv6 address`);
    return ipTarget(6, bracketed, prefixText, port, fail);
  }
  const host = bare as string;
  if (net.isIPv4(host)) return ipTarget(4, host, prefixText, port, fail);
  if (/^[0-9.]+$/.test(host)) throw fail(`has "${host}", which is not an IPv4 address`);
  if (prefixText !== undefined) throw fail('has a prefix length after a name; a network is an address and a length, e.g. 10.0.0.0/8:5432');
  const name = host.toLowerCase();
  const labels = (name.endsWith('.') ? name.slice(0, -1) : name).split('.');
  if (name.length > 254 || !labels.every((l) => LABEL_RE.test(l))) {
    throw fail(`has "${host}", which is not a host name (letters, digits and "-" in dot-separated labels of at most 63)`);
  }
  return { kind: 'host', name, port };
}

function ipTarget(family: 4 | 6, ip: string, prefixText: string | undefined, port: number, fail: (why: string) => InvalidConnectTargetError): ConnectTarget {
  const bits = family === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? bits : Number(prefixText);
  if (prefix > bits) throw fail(`has prefix length /${prefixText ?? ''}; an IPv${family} network's is 0-${bits}`);
  const bytes = ipBytes(family, ip);
  if (prefix === bits) return { kind: 'address', family, ip: formatIp(family, bytes), port };
  for (let bit = prefix; bit < bits; bit++) bytes[bit >> 3] = (bytes[bit >> 3] as number) & ~(0x80 >> (bit & 7));
  return { kind: 'cidr', family, ip: formatIp(family, bytes), prefix, port };
}

/** The bytes of an address `net.isIP` accepted (an IPv6 one may end in dotted IPv4). */
function ipBytes(family: 4 | 6, ip: string): number[] {
  if (family === 4) return ip.split('.').map(Number);
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(ip);
  const hex = v4 === null ? ip : `${ip.slice(0, v4.index)}0:0`;
  const [head, tail] = hex.split('::') as [string, string | undefined];
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const bytes = groups.flatMap((g) => [parseInt(g, 16) >> 8, parseInt(g, 16) & 0xff]);
  if (v4 !== null) bytes.splice(12, 4, ...v4.slice(1).map(Number));
  return bytes;
}

function formatIp(family: 4 | 6, bytes: number[]): string {
  if (family === 4) return bytes.join('.');
  const groups = Array.from({ length: 8 }, (_, i) => (((bytes[2 * i] as number) << 8) | (bytes[2 * i + 1] as number)).toString(16));
  // Node writes IPv6 the RFC 5952 way (zeros compressed, lower case).
  return new net.SocketAddress({ address: groups.join(':'), family: 'ipv6' }).address;
}

/** The canonical text of a target: what the wire, agents' state and plans carry. */
export function formatConnectTarget(t: ConnectTarget): string {
  switch (t.kind) {
    case 'address':
      return `${t.family === 6 ? `[${t.ip}]` : t.ip}:${t.port}`;
    case 'cidr':
      return `${t.family === 6 ? `[${t.ip}]` : t.ip}/${t.prefix}:${t.port}`;
    case 'host':
      return `${t.name}:${t.port}`;
    case 'process':
      if (t.address === undefined) throw unresolvedProcessTarget(t);
      return `${t.name}@${t.address.includes(':') ? `[${t.address}]` : t.address}:${t.port}`;
  }
}

/** A process target met where only addresses and host names can be: the planner resolves those first. */
export function unresolvedProcessTarget(t: Extract<ConnectTarget, { kind: 'process' }>): LowcloudError {
  return new LowcloudError(
    ErrorCode.INVALID_CONNECT,
    `connect target process ${t.name}:${t.port} was not resolved to an address; the planner resolves process names before a grant reaches an agent`,
    { details: { process: t.name, port: t.port } },
  );
}

/** Parse a grant's list: each target once, sorted by its canonical text, so order never matters. */
export function parseConnectTargets(texts: readonly string[], field = 'connect'): ConnectTarget[] {
  const byText = new Map(texts.map((text, i) => {
    const t = parseConnectTarget(text, `${field}.${i}`);
    return [formatConnectTarget(t), t] as const;
  }));
  return [...byText.keys()].sort(compareText).map((k) => byText.get(k) as ConnectTarget);
}

/** Targets in the list form the wire, agents' state and plans carry: canonical texts, sorted, each once. */
export function connectList(targets: readonly ConnectTarget[]): string[] {
  return [...new Set(targets.map(formatConnectTarget))].sort(compareText);
}

/** A grant's list in its one canonical spelling: canonical texts, sorted, each once. */
export function normalizeConnect(texts: readonly string[], field = 'connect'): string[] {
  return connectList(parseConnectTargets(texts, field));
}

/** True when `text` is a target in its canonical spelling (what the wire accepts). */
export function isCanonicalConnectTarget(text: string): boolean {
  try {
    return formatConnectTarget(parseConnectTarget(text)) === text;
  } catch {
    return false;
  }
}

/** True when a list is strictly ascending: sorted and without repeats. */
export function isSortedDistinct(texts: readonly string[]): boolean {
  return texts.every((t, i) => i === 0 || compareText(texts[i - 1] as string, t) < 0);
}

/** The network grant with its targets parsed: once, where a sandbox receives a grant. */
export function parseNetworkGrant(grant: NetworkGrant, field = 'grants.network'): NetworkAccess {
  return { listen: [...grant.listen], connect: parseConnectTargets(grant.connect, `${field}.connect`), udp: grant.udp === true };
}

function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
