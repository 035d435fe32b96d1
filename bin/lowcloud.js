#!/usr/bin/env node
// The one `lowcloud` command. Each subcommand lives in the package that owns it; this file only
// composes them, so `lowcloud --help` lists everything a user can do.

// `lowcloud plan BASE TARGET` (what CI runs on every commit): the workers that load the two files
// start first, and read and parse while the rest of the command loads (planner/src/side-thread.ts).
// Hence the imports below are dynamic: static ones would all load before this line runs.
if (process.argv[2] === 'plan') (await import('@lowcloud/planner/prestart')).prestartPlan(process.argv.slice(3));

// A reader that stops early (`lowcloud plan --json | head`) closes the pipe under the command: it
// ends quietly then, as a command in a pipeline does, not with a stack trace of the EPIPE.
process.stdout.on('error', (err) => {
  if (err.code !== 'EPIPE') throw err;
  process.exit();
});

const { Command } = await import('commander');
const { register: registerPlanner } = await import('@lowcloud/planner/cli');

const program = new Command('lowcloud')
  .description('Run WebAssembly processes with enforced grants on your own machines, planned from a committed file.')
  .version('0.1.0')
  .showHelpAfterError('(run with --help for usage)');

registerPlanner(program);
// `plan` needs none of the other packages' commands: its help and errors name only its own.
if (process.argv[2] !== 'plan') {
  const [sandbox, agent] = await Promise.all([import('@lowcloud/sandbox/cli'), import('@lowcloud/node-agent/cli')]);
  sandbox.register(program);
  agent.register(program);
}

await program.parseAsync(process.argv);
// `plan` is done once its document has reached stdout (`--out` is awaited): exit then, rather
// than tear down the heaps of the command and its side workers first, which took ~40 ms at 50,000
// processes (docs/performance.md, "Plan time"). A pipe may still hold what its reader has not
// taken (writes to it are asynchronous): then once it is drained. If it never drains (the reader
// went away), the command ends as it would have without this.
if (process.argv[2] === 'plan') {
  if (process.stdout.writableLength === 0) process.exit();
  else process.stdout.once('drain', () => process.exit());
}
