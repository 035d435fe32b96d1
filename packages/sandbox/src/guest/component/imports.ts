import * as cli from '@bytecodealliance/preview2-shim/cli';
import * as clocks from '@bytecodealliance/preview2-shim/clocks';
import * as io from '@bytecodealliance/preview2-shim/io';
import * as random from '@bytecodealliance/preview2-shim/random';
import * as sockets from '@bytecodealliance/preview2-shim/sockets';
import type { GuestDir } from '../core/dir.js';
import { GuestExit } from '../exit.js';
import { allowsConnect, type IpAddr, type NetPolicy } from '../net/policy.js';
import { guardUdpSends } from '../net/udp.js';
import { filesystemImports, setReadyPollable } from './filesystem.js';


type Network = object;
type Addr = { tag: 'ipv4' | 'ipv6'; val: { port: number; address: number[] } };
const policies = new WeakMap<Network, NetPolicy>();
const toIp = (a: Addr): IpAddr =>
  a.tag === 'ipv4' ? { family: 4, bytes: a.val.address } : { family: 6, bytes: a.val.address.flatMap((g) => [g >> 8, g & 0xff]) };

let patched = false;
/**
 * The shim's socket classes are shared by the realm, so the allow-list is keyed by the Network
 * resource each instance gets: a socket operation is checked against the policy of the network
 * it names, and a network without a policy (none is ever handed out) is denied.
 */
function patchSockets(): void {
  if (patched) return;
  patched = true;
  const { TcpSocket } = sockets.tcp as unknown as { TcpSocket: { prototype: Record<string, (...a: unknown[]) => unknown> } };
  const { UdpSocket } = sockets.udp as unknown as { UdpSocket: { prototype: Record<string, (...a: unknown[]) => unknown> } };
  const wrap = (proto: Record<string, (...a: unknown[]) => unknown>, method: string, allow: (p: NetPolicy, addr: Addr) => boolean) => {
    const orig = proto[method] as (...a: unknown[]) => unknown;
    proto[method] = function (this: unknown, ...args: unknown[]) {
      const [network, addr] = args as [Network, Addr];
      const p = policies.get(network);
      if (p === undefined || !allow(p, addr)) throw 'access-denied';
      return orig.apply(this, args);
    };
  };
  wrap(TcpSocket.prototype, 'startBind', (p, a) => p.listen.has(a.val.port));
  wrap(TcpSocket.prototype, 'startConnect', (p, a) => allowsConnect(p, toIp(a), a.val.port));
  wrap(UdpSocket.prototype, 'startBind', (p, a) => p.udp && p.listen.has(a.val.port));
  guardUdpSends(sockets.udp as unknown as Parameters<typeof guardUdpSends>[0], (n) => policies.get(n));
}

/**
 * An output stream resource of the shim's own class (so the bindings accept it) whose writes are
 * synchronous: the shim's stdout goes through its I/O worker, and output still queued there is lost
 * when the guest exits; a synchronous write also back-pressures a guest that floods its output.
 */
function syncOutputStream(write: (b: Uint8Array) => void, readiness: { subscribe(): unknown }): object {
  const { OutputStream } = io.streams as unknown as { OutputStream: { prototype: object } };
  const stream = Object.create(OutputStream.prototype) as Record<string | symbol, unknown>;
  Object.assign(stream, {
    checkWrite: () => 65536n,
    write: (b: Uint8Array) => write(b),
    blockingWriteAndFlush: (b: Uint8Array) => write(b),
    flush: () => undefined,
    blockingFlush: () => undefined,
    writeZeroes: (n: bigint) => write(new Uint8Array(Number(n))),
    blockingWriteZeroesAndFlush: (n: bigint) => write(new Uint8Array(Number(n))),
    subscribe: () => readiness.subscribe(),
  });
  stream[Symbol.dispose ?? Symbol.for('dispose')] = () => undefined;
  stream[Symbol.for('dispose')] = () => undefined;
  return stream;
}

export function componentImports(opts: {
  argv: string[];
  env: Record<string, string>;
  policy: NetPolicy;
  /** The guest's directories (granted dirs and config mounts), as [guest path, directory]. */
  preopens: [string, GuestDir][];
  stdout: (b: Uint8Array) => void;
  stderr: (b: Uint8Array) => void;
}): Record<string, unknown> {
  const shimStdout = (cli.stdout as unknown as { getStdout(): { subscribe(): unknown } }).getStdout();
  const stdout = syncOutputStream(opts.stdout, shimStdout);
  const stderr = syncOutputStream(opts.stderr, shimStdout);
  setReadyPollable(() => shimStdout.subscribe());
  const filesystem = filesystemImports(opts.preopens);
  patchSockets();
  // The browser typings are what TypeScript sees; at run time Node loads the nodejs build, which has createSockets.
  const local = (sockets as unknown as { createSockets(c: object): unknown }).createSockets({}) as { instanceNetwork: { instanceNetwork(): Network } } & Record<string, unknown>;
  const network = local.instanceNetwork.instanceNetwork();
  policies.set(network, opts.policy);
  const lookup = sockets.ipNameLookup as unknown as { resolveAddresses(n: Network, name: string): unknown } & Record<string, unknown>;
  const udpCreate = sockets.udpCreateSocket as unknown as { createUdpSocket(f: string): unknown };
  return {
    'wasi:cli/environment': { getArguments: () => opts.argv, getEnvironment: () => Object.entries(opts.env), initialCwd: () => undefined },
    // Never the host's process.exit: the guest's exit ends the guest, not the process hosting it.
    'wasi:cli/exit': {
      exit: (status: { tag: 'ok' | 'err' }) => {
        throw new GuestExit(status.tag === 'err' ? 1 : 0);
      },
      exitWithCode: (code: number) => {
        throw new GuestExit(code);
      },
    },
    'wasi:cli/stdin': cli.stdin,
    'wasi:cli/stdout': { getStdout: () => stdout },
    'wasi:cli/stderr': { getStderr: () => stderr },
    'wasi:cli/terminal-input': cli.terminalInput,
    'wasi:cli/terminal-output': cli.terminalOutput,
    'wasi:cli/terminal-stdin': cli.terminalStdin,
    'wasi:cli/terminal-stdout': cli.terminalStdout,
    'wasi:cli/terminal-stderr': cli.terminalStderr,
    'wasi:clocks/wall-clock': clocks.wallClock,
    'wasi:clocks/monotonic-clock': clocks.monotonicClock,
    // The same enforcement core as preview1: paths, links and the disk quota (filesystem.ts).
    'wasi:filesystem/preopens': filesystem.preopens,
    'wasi:filesystem/types': filesystem.types,
    'wasi:io/error': io.error,
    'wasi:io/streams': io.streams,
    'wasi:io/poll': io.poll,
    'wasi:random/random': random.random,
    'wasi:random/insecure': random.insecure,
    'wasi:random/insecure-seed': random.insecureSeed,
    'wasi:sockets/network': local.network,
    'wasi:sockets/instance-network': { instanceNetwork: () => network },
    'wasi:sockets/tcp': local.tcp,
    'wasi:sockets/tcp-create-socket': local.tcpCreateSocket,
    'wasi:sockets/udp': local.udp,
    'wasi:sockets/udp-create-socket': {
      createUdpSocket: (family: string) => {
        if (!opts.policy.udp) throw 'access-denied';
        return udpCreate.createUdpSocket(family);
      },
    },
    'wasi:sockets/ip-name-lookup': {
      ...lookup,
      resolveAddresses: (n: Network, name: string) => {
        if (!opts.policy.names.has(name)) throw 'access-denied';
        // A process name gives the address the planner resolved it to (an IP literal resolves to itself).
        return lookup.resolveAddresses(n, opts.policy.aliases.get(name) ?? name);
      },
    },
  };
}
