import type { Command } from 'commander';

/** Adds this package's subcommands to the `lowcloud` program. */
export function register(_program: Command): void {}
