#!/usr/bin/env node
// The one `lowcloud` command. Each subcommand lives in the package that owns it; this file only
// composes them, so `lowcloud --help` lists everything a user can do.
import { Command } from 'commander';
import { register as registerPlanner } from '@lowcloud/planner/cli';
import { register as registerSandbox } from '@lowcloud/sandbox/cli';
import { register as registerAgent } from '@lowcloud/node-agent/cli';

const program = new Command('lowcloud')
  .description('Run WebAssembly processes with enforced grants on your own machines, planned from a committed file.')
  .version('0.1.0')
  .showHelpAfterError('(run with --help for usage)');

registerPlanner(program);
registerSandbox(program);
registerAgent(program);

await program.parseAsync(process.argv);
