#!/usr/bin/env node
// The one `lowcloud` command. Each subcommand lives in the package that owns it; this file only
// composes them, so `lowcloud --help` lists everything a user can do.

// `lowcloud plan BASE TARGET` (what CI runs on every commit): the workers that load the two files
// start first, and read and parse while the rest of the command loads (planner/src/side-thread.ts).
// Hence the imports below are dynamic: static ones would all load before this line runs.
if (process.argv[2] === 'plan') (await import('@lowcloud/planner/prestart')).prestartPlan(process.argv.slice(3));

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
