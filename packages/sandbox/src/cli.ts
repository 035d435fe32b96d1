import { constants } from 'node:os';
import { Command, Option } from 'commander';
import { CONNECT_FORMS, connectList, ErrorCode, InvalidConnectTargetError, LowcloudError, parseConnectTarget, parseCpu, parseSize, UsageError, type Grants } from '@lowcloud/api';
import type { NetnsMode } from './host/netns.js';
import type { DirMount, EnforcementReport, GuestExit } from './types.js';

const collect = (v: string, prev: string[]) => [...prev, v];

/** Adds `lowcloud run` to the `lowcloud` program. */
export function register(program: Command): void {
  program
    .command('run')
    .description('Run one WASI binary in the foreground, sandboxed, with grants; exits with its status (like `wasmtime run`).')
    .argument('<app.wasm>', 'a WASI preview1 command module or a WASI 0.2 command component')
    .argument('[args...]', 'arguments for the guest (put them after --)')
    .option('--memory <size>', 'memory grant: linear memory maximum, e.g. 64MiB')
    .option('--cpu <cores>', 'CPU grant in cores, e.g. 0.5')
    .option('--dir <HOST[::GUEST]>', 'give the guest a directory (repeatable); without ::GUEST it sees HOST as written', collect, [])
    .option('--disk <size>', 'bytes the guest may add across its writable directories, e.g. 100MiB')
    .option('--gpu-memory <size>', 'gpu grant: bytes of GPU buffers the guest may hold at once (lowcloud/gpu.h), e.g. 64MiB')
    .option('--gpu-submit-seconds <seconds>', 'with --gpu-memory: longest one GPU submission may run before the guest is ended (default 10)')
    .option('--listen <port>', 'TCP port the guest may listen on (repeatable; WASI 0.2 guests)', collect, [])
    .option('--connect <target>', `a target the guest may connect to (repeatable; WASI 0.2 guests): ${CONNECT_FORMS}`, collect, [])
    .option('--udp', 'allow UDP on the granted ports and targets (WASI 0.2 guests)')
    .option('--env <K=V>', 'environment variable for the guest (repeatable); the host environment is never passed', collect, [])
    .option('--config <GUEST=HOST>', 'a read-only file at an absolute guest path (repeatable)', collect, [])
    .option('--stdin', 'pass standard input through to the guest (default: the guest reads end-of-file)')
    .option('-v, --verbose', 'print the enforcement report (which mechanism enforces each grant, at which level) to stderr')
    .addOption(new Option('--netns <mode>', 'network namespace of a guest with a network grant (root wall only): veth (default: its own over a veth pair; IPv4: a grant with an IPv6 target goes through pasta), pasta (its own through Debian\'s passt) or host (the host\'s; /proc/net shows the host\'s sockets)').choices(['veth', 'pasta', 'host']).default('veth'))
    .addOption(new Option('--no-kernel', 'use only the runtime layer of each grant, even where the kernel layers (cgroups, nftables) are available'))
    .addHelpText(
      'after',
      `
Examples:
  lowcloud run hello.wasm -- world
  lowcloud run app.wasm --memory 64MiB --cpu 0.5 --dir ./data::/data --disk 100MiB -- --port 8080
  lowcloud run tool.wasm --config /etc/app.toml=./app.toml --env LOG=debug --verbose

Exit status: the guest's own; 134 when it traps (the message goes to stderr); 137 when it is
stopped for going past its memory grant; 143 when stopped by a signal to lowcloud; 2 when a
flag's value cannot mean anything (--connect bogus) and nothing was started.`,
    )
    .action(async (wasm: string, args: string[], o: RunFlags) => {
      try {
        process.exitCode = await runOnce(wasm, args, o);
      } catch (err) {
        process.stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
        process.exitCode = err instanceof UsageError ? 2 : 1;
      }
    });
}

interface RunFlags {
  memory?: string;
  cpu?: string;
  dir: string[];
  disk?: string;
  gpuMemory?: string;
  gpuSubmitSeconds?: string;
  listen: string[];
  connect: string[];
  env: string[];
  config: string[];
  udp?: boolean;
  stdin?: boolean;
  verbose?: boolean;
  kernel: boolean;
  netns: NetnsMode;
}

/** Compile the flags into a grant once; every error names the flag and the fix. */
export function compileRunFlags(o: RunFlags): { grants: Grants; dirs: DirMount[]; env: Record<string, string>; config: { guest: string; host: string }[] } {
  const grants: Grants = { network: { listen: [], connect: connectTargets(o.connect), ...(o.udp === true ? { udp: true } : {}) } };
  if (o.memory !== undefined) grants.memory = parseSize(o.memory, '--memory');
  if (o.cpu !== undefined) grants.cpu = parseCpu(o.cpu, '--cpu');
  if (o.disk !== undefined) grants.disk = parseSize(o.disk, '--disk');
  if (o.gpuSubmitSeconds !== undefined && o.gpuMemory === undefined) throw new LowcloudError(ErrorCode.INVALID_INPUT, '--gpu-submit-seconds needs --gpu-memory (the gpu grant)');
  if (o.gpuMemory !== undefined) {
    const seconds = o.gpuSubmitSeconds === undefined ? undefined : Number(o.gpuSubmitSeconds);
    if (seconds !== undefined && !(seconds > 0)) throw new LowcloudError(ErrorCode.INVALID_INPUT, `--gpu-submit-seconds ${o.gpuSubmitSeconds}: not a positive number of seconds`);
    grants.gpu = { memory: parseSize(o.gpuMemory, '--gpu-memory'), ...(seconds === undefined ? {} : { submitSeconds: seconds }) };
  }
  for (const p of o.listen) {
    const n = Number(p);
    if (!Number.isInteger(n) || n < 1 || n > 65535) throw new LowcloudError(ErrorCode.INVALID_INPUT, `--listen ${p}: not a TCP port (1-65535)`);
    grants.network.listen.push(n);
  }
  const dirs = o.dir.map((d): DirMount => {
    const [host, guest] = d.split('::') as [string, string | undefined];
    if (host === '') throw new LowcloudError(ErrorCode.INVALID_INPUT, `--dir ${d}: give HOST or HOST::GUEST`);
    return { host, guest: guest ?? host };
  });
  const env: Record<string, string> = {};
  for (const kv of o.env) {
    const i = kv.indexOf('=');
    if (i <= 0) throw new LowcloudError(ErrorCode.INVALID_INPUT, `--env ${kv}: write it as NAME=value`);
    env[kv.slice(0, i)] = kv.slice(i + 1);
  }
  const config = o.config.map((c) => {
    const i = c.indexOf('=');
    const guest = c.slice(0, i);
    if (i <= 0 || !guest.startsWith('/')) throw new LowcloudError(ErrorCode.INVALID_INPUT, `--config ${c}: write it as /guest/path=host/file (the guest path must be absolute)`);
    return { guest, host: c.slice(i + 1) };
  });
  return { grants, dirs, env, config };
}

/** Each --connect parsed into its target: a bad one is a usage error naming the flag and the accepted forms. */
function connectTargets(flags: readonly string[]): string[] {
  const targets = flags.map((text) => {
    try {
      return parseConnectTarget(text, '--connect');
    } catch (err) {
      if (err instanceof InvalidConnectTargetError) throw new UsageError(err.code, err.message, { cause: err, details: { flag: '--connect', value: text } });
      throw err;
    }
  });
  // The grant's one spelling: sorted, each once (as a planner sends it to an agent).
  return connectList(targets);
}

async function runOnce(wasm: string, args: string[], o: RunFlags): Promise<number> {
  const { grants, dirs, env, config } = compileRunFlags(o);
  // Loaded here, not with the CLI: every other `lowcloud` command would pay for the sandbox's
  // modules at start-up (~0.15-0.2 s) and never use them.
  const { spawnGuest } = await import('./host/spawn.js');
  const { REPORT_KEYS } = await import('./host/grants/index.js');
  const guest = await spawnGuest({ wasm, args, env, dirs, config, grants, stdin: o.stdin === true ? 'inherit' : 'ignore' }, { kernel: o.kernel, netns: o.netns });
  if (o.verbose === true) process.stderr.write(formatReport(guest.report, REPORT_KEYS));
  const onSignal = () => void guest.stop(2000);
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const exit = await guest.exited;
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  return exitStatus(exit);
}

export function exitStatus(exit: GuestExit): number {
  switch (exit.kind) {
    case 'exit':
      return exit.code;
    case 'trap':
      return 134;
    case 'violation':
      process.stderr.write(`lowcloud: guest stopped: went past its ${exit.grant} grant (${exit.detail})\n`);
      return 137;
    case 'stopped':
      return 143;
    case 'signal':
      return 128 + ((constants.signals as Record<string, number>)[exit.signal] ?? 9);
  }
}

/** The report as `--verbose` prints it, grants in `keys` order (host/grants REPORT_KEYS). */
export function formatReport(r: EnforcementReport, keys: readonly (keyof EnforcementReport)[]): string {
  const lines = ['enforcement:'];
  for (const grant of keys) {
    for (const e of r[grant] ?? []) lines.push(`  ${grant.padEnd(8)} ${e.level.padEnd(8)} ${e.mechanism}`);
  }
  return `${lines.join('\n')}\n`;
}
