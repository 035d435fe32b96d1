import { closeSync, fstatSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';
import { Command, Option } from 'commander';
import { InvalidInputError, LowcloudError } from '@lowcloud/api/infra';
import { loadForPlan, loadFromWorkingTree } from './load.js';
import { FlagError } from './errors.js';
import { buildDocument, type PlanDocument } from './plan/document.js';
import { documentText } from './plan/document-text.js';
import { getPlanner, planners } from './plan/registry.js';
import { colours, renderHuman } from './plan/render-human.js';
import type { ApplyFlags } from './apply/commands.js';
import { DEFAULT_CONNECTIONS } from './apply/limit.js';

// The commands that talk to agents or seal secrets are loaded when one of them runs: `plan` and
// `validate` (what CI runs on every commit) start ~0.07 s sooner without them.
const agents = () => import('./apply/commands.js');
const secrets = () => import('./secret/commands.js');

/** `--parallelism` of every command that reaches the whole fleet. */
const parallelismFlag = ['--parallelism <n>', 'machines worked on at once: the bound on open connections (each machine gets one, its calls pipelined over it)', String(DEFAULT_CONNECTIONS)] as const;

/** Adds `validate`, `plan`, `apply`, `up`, `down` and `status` to the `lowcloud` program. */
export function register(program: Command): void {
  registerApply(program);
  registerSecret(program);
  program
    .command('validate')
    .description('Check an infrastructure file: schema, machines, capacity, ports, binaries and config files.')
    .argument('<infra.yaml>', 'the infrastructure file')
    .addHelpText('after', '\nPrints every problem at once with file:line:column, field and fix, and exits 1;\nchanges nothing. Exits 0 and prints a one-line summary when the file is valid.\n\nExample:\n  lowcloud validate infra.yaml')
    .action((file: string) =>
      run(async () => {
        const infra = await loadFromWorkingTree(file);
        process.stdout.write(`${file}: ok (${Object.keys(infra.machines).length} machine(s), ${Object.keys(infra.processes).length} process(es))\n`);
      }),
    );

  program
    .command('plan')
    .description('Show the calls that turn the base version of an infrastructure file into the target version.')
    .argument('<files...>', 'BASE.yaml TARGET.yaml, or with --base: the infrastructure file')
    .option('--base <git-rev>', 'read the base version (and every file it references) from this git revision')
    .option('--live', 'the base is what the agents run now (asks every agent; drift shows up in the plan)')
    .option('--key <file>', 'private key that signs the status calls of --live (every call is signed, reads too); default $LOWCLOUD_KEY, or the local operator key of `up`')
    .option(...parallelismFlag)
    .option('--json', 'print the plan document (format_version 1) instead of the human view')
    .option('--out <plan.json>', 'also write the plan document to this file, for `lowcloud apply`')
    .option('--detailed-exitcode', 'exit 0 when there are no changes, 2 when there are, 1 on error')
    .addOption(new Option('--planner <name>', 'how to order calls').choices(Object.keys(planners)).default('minimal'))
    .option('--no-color', 'no colour even on a terminal')
    .addHelpText(
      'after',
      `
Planners:
${Object.values(planners).map((p) => `  ${p.name.padEnd(11)} ${p.description}`).join('\n')}

Examples:
  lowcloud plan old.yaml new.yaml
  lowcloud plan --base origin/main infra.yaml              # in CI: what this branch changes
  lowcloud plan --base HEAD~1 infra.yaml --out plan.json   # save for lowcloud apply
  lowcloud plan --base main infra.yaml --json | jq .summary
  lowcloud plan --live infra.yaml --out plan.json          # against the running fleet

Identity is content: a binary or config file changed iff its sha256 changed. Config
contents are never printed, only digests.`,
    )
    .action((files: string[], opts: { base?: string; live?: boolean; key?: string; parallelism: string; json?: boolean; out?: string; detailedExitcode?: boolean; planner: string; color: boolean }) =>
      run(async () => {
        const emit = async (doc: PlanDocument) => {
          // The text in pieces (document-text.ts), and its line break, written apart: joined, the
          // text (15 MB at 100,000 processes) would be copied once more before it is encoded.
          const text = opts.out !== undefined || opts.json === true ? [...documentText(doc), '\n'] : [];
          if (opts.out !== undefined) writeFileOf(opts.out, text);
          if (opts.json === true) writeStdout(text);
          else process.stdout.write(renderHuman(doc, useColour(opts.color) ? colours : undefined).replace('matches the base.', opts.live === true ? 'matches the live state.' : 'matches the base.'));
          if (opts.detailedExitcode === true && doc.calls.length > 0) process.exitCode = 2;
        };
        if (opts.live === true) {
          if (opts.base !== undefined || files.length !== 1) throw new FlagError(`with --live, give exactly one infrastructure file and no --base (got ${files.length} file(s)${opts.base === undefined ? '' : ' and --base'})`);
          await emit(await (await agents()).planLive(files[0] as string, opts.planner, opts));
          return;
        }
        let baseFile: string;
        let targetFile: string;
        if (opts.base !== undefined) {
          if (files.length !== 1) throw new FlagError(`with --base, give exactly one infrastructure file (got ${files.length})`);
          baseFile = targetFile = files[0] as string;
        } else {
          if (files.length !== 2) throw new FlagError(`give BASE.yaml and TARGET.yaml, or --base <git-rev> and one file (got ${files.length} file(s))`);
          [baseFile, targetFile] = files as [string, string];
        }
        const planner = getPlanner(opts.planner);
        const [a, b] = await loadForPlan(opts.base === undefined ? { file: baseFile } : { file: baseFile, revision: opts.base }, { file: targetFile }, planner.reads);
        await emit(buildDocument(planner.plan(a, b), a, b));
      }),
    );
}

const applyOptions = (cmd: Command) =>
  cmd
    .option('--key <file>', 'private key that signs the calls (from `lowcloud keygen`); default $LOWCLOUD_KEY, or the local operator key of `up`')
    .option(...parallelismFlag)
    .option('--json', 'print the result as JSON');

function registerApply(program: Command): void {
  applyOptions(
    program
      .command('apply')
      .description('Execute a saved plan against the agents, or plan and apply in one step with --base.')
      .argument('<plan.json | infra.yaml>', 'a plan from `lowcloud plan --out`, or with --base the infrastructure file')
      .option('--base <git-rev>', 'plan from this git revision to the working tree, then apply')
      .addOption(new Option('--planner <name>', 'how to order calls (with --base)').choices(Object.keys(planners)).default('minimal')),
  )
    .addHelpText(
      'after',
      `
Before any call, every agent proves its pinned key and its live state is compared with the plan:
a stale plan is refused, naming what moved. Missing binaries and configs are uploaded first (only
what an agent lacks), then calls run in the plan's order, machines in parallel (up to --parallelism
at once), each machine's calls pipelined over its one connection; machines wait for each other
only where a process moves between them. If some call
fails, the others' results are still reported and the exit code is 1; running the same command
again resumes, and re-applying an applied plan does nothing.

Examples:
  lowcloud plan --base HEAD~1 infra.yaml --out plan.json && lowcloud apply plan.json --key ci.key
  lowcloud apply --base origin/main infra.yaml --key ci.key`,
    )
    .action((file: string, o: ApplyFlags & { base?: string; planner: string }) => run(async () => {
        const { applyBase, applyFile } = await agents();
        await (o.base === undefined ? applyFile(file, o) : applyBase(file, o.base, o));
      }));

  applyOptions(
    program
      .command('up')
      .description('Bring the fleet in an infrastructure file up: local agents are started here, then the live state is planned against the file and applied.')
      .argument('<infra.yaml>', 'the infrastructure file')
      .addOption(new Option('--planner <name>', 'how to order calls').choices(Object.keys(planners)).default('minimal'))
      .option('--allow-unwalled', 'the local agents it starts run guests without the kernel wall where it cannot be built (lowcloud agent --allow-unwalled); without it such a guest is refused'),
  )
    .addHelpText(
      'after',
      `
Machines with \`agent: local\` get an agent on this machine (state in .lowcloud/ next to the file,
keys made on first use). Run it again after editing the file: only the difference is applied.
--allow-unwalled applies to the agents this command starts, not to one already running
(\`lowcloud down\` first).

Example:
  lowcloud up examples/hello/infra.yaml`,
    )
    .action((file: string, o: ApplyFlags & { planner: string; allowUnwalled?: boolean }) => run(async () => (await agents()).up(file, o)));

  applyOptions(
    program
      .command('down')
      .description('Stop every process of an infrastructure file, then the local agents `up` started.')
      .argument('<infra.yaml>', 'the infrastructure file')
      .addOption(new Option('--planner <name>', 'how to order calls').choices(Object.keys(planners)).default('minimal')),
  ).action((file: string, o: ApplyFlags & { planner: string }) => run(async () => (await agents()).up(file, o, true)));

  program
    .command('logs')
    .description("Print the last lines of a process's log (stdout and stderr), from the agent of its machine; --follow keeps printing.")
    .argument('<infra.yaml>', 'the infrastructure file')
    .argument('<process>', 'the process name in the file')
    .option('-n, --tail <lines>', 'how many of the last lines', '100')
    .option('-f, --follow', 'keep printing new lines until interrupted')
    .option('--key <file>', 'private key that signs the calls (every call is signed, reads too); default $LOWCLOUD_KEY, or the local operator key of `up`')
    .addHelpText(
      'after',
      `
Logs are kept by each agent in size-capped rotating files (1 MiB x 3 per process).

Examples:
  lowcloud logs examples/hello/infra.yaml hello
  lowcloud logs infra.yaml kv-a --tail 20 --follow`,
    )
    .action((file: string, proc: string, o: { tail: string; follow?: boolean; key?: string }) => run(async () => (await agents()).logs(file, proc, o)));

  program
    .command('events')
    .description('Follow what happens to processes on the machines of an infrastructure file: started, exited, died, restarted, grant-violated, crash-loop, stopped.')
    .argument('<infra.yaml>', 'the infrastructure file')
    .option('--machine <name>', 'only this machine')
    .option('--json', 'one JSON object per line')
    .option('--key <file>', 'private key that signs the calls (every call is signed, reads too); default $LOWCLOUD_KEY, or the local operator key of `up`')
    .addHelpText(
      'after',
      `
Runs until interrupted, or until every agent has gone away.

Examples:
  lowcloud events examples/kv-cluster/infra.yaml
  lowcloud events infra.yaml --machine eu-1 --json | jq .`,
    )
    .action((file: string, o: { machine?: string; json?: boolean; key?: string }) => run(async () => (await agents()).events(file, o)));

  program
    .command('status')
    .description('Ask every agent and show, per process, whether the live state matches the file (missing, extra, different).')
    .argument('<infra.yaml>', 'the infrastructure file')
    .option('--json', 'machine-readable output')
    .addHelpText(
      'after',
      `
Exit codes: 0 in sync; 2 drift (a process missing, extra or different); 1 when any agent could not
be checked (unreachable, wrong key: it did not prove it holds the key the file pins, or it refused
the call) or on error. Each agent that could not be checked is named with the reason.

Examples:
  lowcloud status infra.yaml
  lowcloud status infra.yaml --json | jq '.processes[] | select(.drift != "ok")'`,
    )
    .option('--key <file>', 'private key that signs the calls (every call is signed, reads too); default $LOWCLOUD_KEY, or the local operator key of `up`')
    .option(...parallelismFlag)
    .action((file: string, o: { json?: boolean; key?: string; parallelism: string }) => run(async () => (await agents()).status(file, o.json === true, o)));
}

function registerSecret(program: Command): void {
  const secret = program.command('secret').description('Seal secrets to the machine that needs them, so the infrastructure file can hold them in a public repository.');
  secret
    .command('seal')
    .description("Encrypt a value from standard input (or --file) to a machine's pinned key and print it as sealed:v1:...")
    .argument('<infra.yaml>', 'the infrastructure file (its machines pin their keys)')
    .requiredOption('--machine <name>', 'the machine whose agent alone may open it')
    .option('--file <path>', 'seal this file (bytes as they are) instead of standard input')
    .addHelpText(
      'after',
      `
Standard input is read to its end, one trailing newline dropped. Only that machine's agent can open
the result, and only when it starts a process that uses it; nothing else needs the plaintext.

Examples:
  printf %s "$DB_PASSWORD" | lowcloud secret seal --machine eu-1 infra.yaml   # env: { DB_PASSWORD: "sealed:v1:..." }
  lowcloud secret seal --machine eu-1 --file app.toml infra.yaml > config/app.toml.sealed
                                                  # config: { /etc/app.toml: config/app.toml.sealed }`,
    )
    .action((file: string, o: { machine: string; file?: string }) =>
      run(async () => {
        if (o.file === undefined && process.stdin.isTTY === true) process.stderr.write('Type the secret, then Ctrl-D:\n');
        const stdin = o.file === undefined ? await readAll(process.stdin) : Buffer.alloc(0);
        process.stdout.write(`${(await secrets()).seal(file, o, stdin)}\n`);
      }),
    );
  secret
    .command('reseal')
    .description("After re-keying a machine's agent: re-seal every value of its processes that is sealed to the old key, in place.")
    .argument('<infra.yaml>', 'the infrastructure file, already pinning the new key')
    .requiredOption('--machine <name>', 'the re-keyed machine')
    .option('--old-key <file>', "the agent's previous private key (its old agent.key): values are opened with it and sealed to the new key")
    .addHelpText(
      'after',
      `
Without --old-key it lists what is still sealed to another key and changes nothing (seal each
again from its plaintext with \`secret seal\`). With it, the infra file keeps every other byte and
sealed config files are rewritten; the plan then replaces exactly the processes that use them.
If the old key may have leaked, change the secrets themselves instead: re-sealing a leaked secret
does not make it secret again.

Example:
  lowcloud secret reseal --machine eu-1 --old-key agent.key.old infra.yaml`,
    )
    .action((file: string, o: { machine: string; oldKey?: string }) => run(async () => (await secrets()).reseal(file, o, (s) => process.stdout.write(`${s}\n`))));
}

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(typeof c === 'string' ? Buffer.from(c) : c);
  return Buffer.concat(chunks);
}

function useColour(flag: boolean): boolean {
  return flag && process.stdout.isTTY === true && process.env.NO_COLOR === undefined;
}

/**
 * Pieces of text written to a file with fs.writeSync, each encoded by Node.js into memory it
 * reuses: through a stream (or writeFile's chunks) each piece became a Buffer of fresh pages
 * first, 7.6 MB at 50,000 processes written in ~70 ms against ~40 ms (docs/performance.md).
 */
function writeAll(fd: number, pieces: readonly string[]): void {
  for (const piece of pieces) {
    const n = writeSync(fd, piece);
    // A short write (a disk that filled up meanwhile): the rest, until it is written or the write fails.
    if (n !== Buffer.byteLength(piece)) {
      const bytes = Buffer.from(piece);
      for (let at = n; at < bytes.length; ) at += writeSync(fd, bytes, at);
    }
  }
}

/**
 * `--out`: written whole or not at all. The pieces go to a file beside it, renamed over it once
 * written: a disk that fills up, or a command killed halfway, leaves the plan that was there
 * before (or none), never the start of one.
 */
function writeFileOf(file: string, pieces: readonly string[]): void {
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  try {
    const fd = openSync(temp, 'wx');
    try {
      writeAll(fd, pieces);
    } finally {
      closeSync(fd);
    }
    renameSync(temp, file);
  } catch (err) {
    rmSync(temp, { force: true });
    throw new Error(`cannot write the plan to ${file}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}

/** To stdout: straight to its file where it is one, else through process.stdout (a pipe or terminal, written as it takes them). */
function writeStdout(pieces: readonly string[]): void {
  let file = false;
  try {
    file = process.stdout.writableLength === 0 && fstatSync(1).isFile();
  } catch {
    // No fd 1 to look at: the stream decides.
  }
  try {
    if (file) writeAll(1, pieces);
    else for (const piece of pieces) process.stdout.write(piece);
  } catch (err) {
    throw new Error(`cannot write the plan to stdout: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}

/** Runs a command; errors become a clear message on stderr and exit code 1, never a stack trace. */
async function run(action: () => Promise<void>): Promise<void> {
  try {
    await action();
  } catch (err) {
    process.exitCode = 1;
    if (err instanceof InvalidInputError) {
      process.stderr.write(`${err.message}\n${err.diagnostics.length} error(s); nothing was changed.\n`);
    } else if (err instanceof LowcloudError) {
      process.stderr.write(`error: ${err.message}\n`);
    } else {
      process.stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
    }
    if (process.env.LOWCLOUD_DEBUG === '1' && err instanceof Error) process.stderr.write(`${err.stack ?? ''}\n`);
  }
}
