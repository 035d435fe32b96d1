import fs from 'node:fs';
import type { Command } from 'commander';
import { generateKeyPair, privateKeyPem } from '@lowcloud/api';
import { KeyExistsError } from './errors.js';
import type { RawAgentFlags } from './options.js';

const collect = (v: string, prev: string[]) => [...prev, v];

/** Adds `agent` and `keygen` to the `lowcloud` program. */
export function register(program: Command): void {
  program
    .command('agent')
    .description('Run the node agent: the daemon that runs this machine\'s processes and serves the signed API.')
    .option('--listen <host:port>', 'where to listen (port 0 picks a free port)', '0.0.0.0:7443')
    .option('--state <dir>', 'state directory: keys, desired state, blobs, logs, audit log', '/var/lib/lowcloud')
    .option('--cache <dir>', 'where admitted binaries are kept (memory-capped modules, transpiled components), default <state>/cache; agents of one computer may share one: a binary is then transpiled once between them', undefined)
    .option('--trust <file-or-key>', 'a public key (file from `lowcloud keygen`, or ed25519:...) allowed to read and change this machine (repeatable)', collect, [])
    .option('--trust-read <file-or-key>', 'a public key allowed only to read: status, logs, events, blob-status (repeatable)', collect, [])
    .option('--metrics-listen <host:port>', 'where /metrics (Prometheus text) is served, over plain HTTP; "off" for nowhere', '127.0.0.1:9464')
    .option('--allow-origin <origin>', 'a web page origin (https://host[:port]) whose WebSocket connections are accepted; any other request with an Origin header is refused (repeatable)', collect, [])
    .option('--insecure-loopback', 'serve plain ws:// instead of wss:// (only on 127.0.0.1 / ::1: tests and `lowcloud up`)')
    .option('--log-max-bytes <size>', 'a process\'s log file is rotated at this size', '1MiB')
    .option('--log-keep <n>', 'rotated log files kept per process', '3')
    .option('--log-total <size>', 'cap on all log files of the agent together; the oldest go first', '256MiB')
    .option('--connect-rate <n>', 'new connections per second from one client address (IPv6: /64; a /56 or IPv4 /24 gets 4x, a /48 or IPv4 /16 8x), with a burst of twice as many; past it a connection is closed before its TLS handshake', '20')
    .option('--connect-budget <n>', 'new connections per second for the whole agent (burst twice as many), shared fairly between /48s (IPv4 /16s): half of it only for those that used less than their share', '100')
    .option('--max-blob-size <size>', 'the largest binary or config file a client may upload', '1GiB')
    .option('--state-reserve <size>', 'free space kept on the state directory\'s filesystem: below it new uploads and starts are refused (STATE_DISK_FULL), so the agent can always save its state and stop guests', '1MiB')
    .option('--allow-unwalled', 'run guests without the kernel wall where it cannot be built (bubblewrap or util-linux missing or broken); without it such a guest is refused (GRANT_UNAVAILABLE) and status says why')
    .option('--netns <mode>', 'network namespace of a guest host with a network grant: veth (default: one of its own over a veth pair, the grant\'s nftables allow-list inside; /proc/net shows only its sockets; IPv4: a grant with an IPv6 target goes through pasta), pasta (one of its own through pasta from Debian\'s passt; IPv4 and IPv6; slower to start; a connect to a target that is down is accepted, then reset) or host (the host\'s: its two filtering layers hold, /proc/net shows the host\'s sockets)', 'veth')
    .option('--warm-pool <n>', 'walled guest hosts kept running ahead of need once this agent runs `process` guests (as root with memory and cpu cgroups): a first start of a process whose module has no disk, network or gpu grant takes one in ~10 ms instead of starting its own (~0.3 s); each idle one 23-26 MiB; 0 for none', '2')
    .option('--verify-audit', 'check the audit log of --state offline and exit: 0 intact, 1 broken (names the first bad line)')
    .addHelpText(
      'after',
      `
On first start the agent makes its Ed25519 key pair in the state directory. It prints one line:
  lowcloud agent listening on wss://0.0.0.0:7443 key ed25519:...
Put that key in the infra file's machines.<name>.key: clients trust the agent only if it proves it
holds that key on this TLS session (no CA needed). Every call but that proof is signed: by a
--trust'ed key (read and change) or a --trust-read one (status, logs, events only). Before a
connection has authenticated it may send only small messages; connections are limited per client
address. /metrics is served apart, on --metrics-listen (loopback by default: scrape it locally or
through a tunnel). Guests keep running if the agent stops or crashes; the next start re-attaches.

Examples:
  lowcloud keygen --out ci && lowcloud agent --state /var/lib/lowcloud --trust ci.pub
  lowcloud agent --state /var/lib/lowcloud --trust ci.pub --trust-read ops.pub --metrics-listen 127.0.0.1:9464
  lowcloud agent --listen 127.0.0.1:0 --state ./state --trust ci.pub --insecure-loopback --metrics-listen off
  lowcloud agent --state /var/lib/lowcloud --verify-audit      # exit 0 intact, 1 broken`,
    )
    .action(async (flags: RawAgentFlags & { verifyAudit?: boolean }) => {
      // The agent's modules load when it runs, not with every `lowcloud` command (~0.1 s).
      const [{ Agent }, { verifyAuditCommand }, { compileAgentOptions }] = await Promise.all([import('./agent/agent.js'), import('./agent/audit-log.js'), import('./options.js')]);
      if (flags.verifyAudit === true) {
        process.exitCode = verifyAuditCommand(flags.state, (s) => process.stdout.write(s), (s) => process.stderr.write(s));
        return;
      }
      try {
        const agent = new Agent(compileAgentOptions(flags));
        await agent.start();
        // One write, so a reader waiting for the first line gets the metrics line with it.
        process.stdout.write(`lowcloud agent listening on ${agent.url} key ${agent.identity.publicKey}\n${agent.metricsUrl === null ? '' : `lowcloud agent metrics on ${agent.metricsUrl}\n`}`);
        const shutdown = () => void agent.close().then(() => process.exit(0));
        process.once('SIGTERM', shutdown);
        process.once('SIGINT', shutdown);
      } catch (err) {
        process.stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
        process.exit(1);
      }
    });

  program
    .command('keygen')
    .description('Make an Ed25519 key pair for an operator or CI: NAME.key (private, 0600) and NAME.pub.')
    .requiredOption('--out <name>', 'file name prefix, e.g. ci -> ci.key and ci.pub')
    .addHelpText('after', '\nGive NAME.pub to agents with --trust; give NAME.key to lowcloud apply with --key.\n\nExample:\n  lowcloud keygen --out ci')
    .action((o: { out: string }) => {
      try {
        for (const f of [`${o.out}.key`, `${o.out}.pub`]) {
          if (fs.existsSync(f)) throw new KeyExistsError(f);
        }
        const pair = generateKeyPair();
        fs.writeFileSync(`${o.out}.key`, privateKeyPem(pair.privateKey), { mode: 0o600 });
        fs.writeFileSync(`${o.out}.pub`, `${pair.publicKey}\n`);
        process.stdout.write(`${pair.publicKey}\nwrote ${o.out}.key (keep it secret) and ${o.out}.pub\n`);
      } catch (err) {
        process.stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
        process.exitCode = 1;
      }
    });
}
