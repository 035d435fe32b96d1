import { existsSync, readFileSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { ENFORCEMENT_LEVELS, ErrorCode, formatSize, LowcloudError, machineAddress, parseInfra, WorkingTreeSource, type AgentStatus, type Enforcement, type KeyPair, type ProcessStatus, type ResolvedMachine } from '@lowcloud/api';
import { buildDocument, parsePlanDocument, type PlanDocument } from '../plan/document.js';
import { getPlanner } from '../plan/registry.js';
import { renderHuman, summaryLine } from '../plan/render-human.js';
import type { PlanState } from '../plan/types.js';
import { loadForLivePlan, loadForPlan, loadFromWorkingTree, type LoadedInfra, type PlanInfra } from '../load.js';
import { AgentUnreachableError, asError, FlagError, MissingKeyError, PlanFormatError, UnknownNameError } from '../errors.js';
import { applyPlan, readRelativeTo, type ApplyResult } from './engine.js';
import { AgentLinks, connectAll, liveState, loadSigner, statusAll, type Endpoints } from './live.js';
import { anyLocalAgentRecorded, awaitExit, localDir, reachRecordedAgents, removeMadeState, type LocalDir, localEndpoints, startLocalAgents, stopAgentsOf, stopLocalAgents, type LinkKeeping, type LocalAgentOptions, type LocalAgentsStarted } from './local-agents.js';
import { createReporter, formatMs } from './progress.js';
import { own } from '../own.js';

export interface ApplyFlags {
  key?: string;
  parallelism: string;
  json?: boolean;
}

function parallelism(flags: { parallelism: string }): number {
  const n = Number(flags.parallelism);
  if (!Number.isInteger(n) || n < 1) throw new FlagError(`--parallelism ${flags.parallelism}: give a whole number of machines, 1 or more`);
  return n;
}

/** The signing key (every call is signed, reads too): --key, $LOWCLOUD_KEY, or the operator key `up` made for local agents. */
function signer(flags: { key?: string | undefined }, infraFile: string | undefined): KeyPair {
  const file = flags.key ?? process.env.LOWCLOUD_KEY ?? (infraFile === undefined ? undefined : localDir(infraFile).operatorKey);
  if (file === undefined) throw new MissingKeyError();
  return loadSigner(file);
}

/** Executes a plan document and prints per-call results and a summary with durations. */
export async function runApply(doc: PlanDocument, flags: ApplyFlags, endpoints: Endpoints, infraFile: string, from: { opening?: Promise<WorkingTreeSource>; links?: AgentLinks; signer?: KeyPair } = {}): Promise<ApplyResult> {
  const result = await applyPlan(doc, {
    endpoints,
    signer: from.signer ?? signer(flags, infraFile),
    parallelism: parallelism(flags),
    readFile: readRelativeTo(infraFile, from.opening),
    ...(from.links === undefined ? {} : { links: from.links }),
    reporter: flags.json === true ? { event: () => undefined, close: () => undefined } : createReporter(process.stderr),
  });
  if (flags.json === true) {
    process.stdout.write(`${JSON.stringify({ format_version: '1', ...result }, null, 2)}\n`);
  } else {
    process.stdout.write(renderResult(result));
  }
  if (!result.ok) process.exitCode = 1;
  return result;
}

export function renderResult(r: ApplyResult): string {
  const count = (s: string) => r.calls.filter((c) => c.status === s).length;
  // Counted in one pass: a filter per machine would be machines x calls.
  const okOn = new Map<string, number>();
  for (const c of r.calls) if (c.status === 'ok') okOn.set(c.machine, (okOn.get(c.machine) ?? 0) + 1);
  const lines = [
    r.ok
      ? `Apply complete: ${count('ok')} call(s) made, ${count('skipped')} already done, in ${formatMs(r.ms)}.`
      : `Apply FAILED: ${count('ok')} call(s) made, ${count('skipped')} already done, ${count('failed')} failed, ${count('not-run')} not run, in ${formatMs(r.ms)}.`,
  ];
  for (const [m, info] of Object.entries(r.machines).sort(([a], [b]) => (a < b ? -1 : 1))) {
    const n = okOn.get(m) ?? 0;
    lines.push(`  ${m.padEnd(12)} ${info.ok ? 'ok    ' : 'FAILED'} ${String(n).padStart(3)} call(s) ${formatMs(info.ms).padStart(7)}${info.error === undefined ? '' : `  ${info.error}`}`);
  }
  for (const c of r.calls.filter((x) => x.status === 'failed' || (x.status === 'not-run' && x.error !== undefined))) {
    lines.push(`  ${c.status === 'failed' ? 'failed' : 'not run'}: ${c.call} ${c.process} on ${c.machine}: ${c.error?.message ?? ''}`);
  }
  if (!r.ok) lines.push('Re-run the same command to resume: calls already made are skipped.');
  return `${lines.join('\n')}\n`;
}

export async function applyFile(planFile: string, flags: ApplyFlags): Promise<void> {
  let value: unknown;
  try {
    value = JSON.parse(await readFile(planFile, 'utf8'));
  } catch (err) {
    throw new PlanFormatError(planFile, `not a readable JSON plan (${asError(err).message})`, { cause: err });
  }
  const doc = parsePlanDocument(value, planFile);
  const infraFile = doc.target.file ?? planFile;
  const target = await loadFromWorkingTree(infraFile).catch(() => null);
  const machines = target?.machines ?? Object.fromEntries(Object.entries(doc.machines).map(([n, m]) => [n, { name: n, agent: m.agent, address: machineAddress({ agent: m.agent }), ...(m.key === undefined ? {} : { key: m.key }), capacity: {} }]));
  await runApply(doc, flags, localEndpoints(localDir(infraFile), machines), infraFile);
}

export async function applyBase(infraFile: string, base: string, flags: ApplyFlags & { planner: string }): Promise<void> {
  // As `plan --base`: big files are loaded a side per worker thread, specs crossing only for what changes.
  const planner = getPlanner(flags.planner);
  const [a, b] = await loadForPlan({ file: infraFile, revision: base }, { file: infraFile }, planner.reads);
  const doc = buildDocument(planner.plan(a, b), a, b);
  if (flags.json !== true) process.stdout.write(renderHuman(doc));
  await runApply(doc, flags, localEndpoints(localDir(infraFile), b.machines), infraFile);
}

/**
 * The live state of every machine in the file; machines whose agent could not be reached, failed
 * its key check or refused `status` are listed with their error, not fatal.
 */
async function readLive(infra: Pick<LoadedInfra, 'machines'>, endpoints: Endpoints, key: KeyPair, limit: number, links?: AgentLinks): Promise<{ live: PlanState; statuses: Map<string, AgentStatus>; unreachable: Map<string, Error> }> {
  const { statuses, errors } = await statusAll(endpoints, Object.keys(infra.machines), key, limit, undefined, links);
  return { live: liveState(infra.machines, statuses), statuses, unreachable: errors };
}

/** `lowcloud up`: start local agents, plan live state -> file, apply. Run again: only the difference. */
export async function up(infraFile: string, flags: ApplyFlags & { planner: string; allowUnwalled?: boolean }, down = false): Promise<void> {
  const dir = localDir(infraFile);
  const log = (s: string) => process.stderr.write(`${s}\n`);
  const limit = parallelism(flags);
  const how = { allowUnwalled: flags.allowUnwalled === true };
  const fresh = !existsSync(dir.root);
  // Each agent is connected to once, by the first step that reaches it (the check that it runs, or
  // its live state), and that connection serves the later steps; `key` is read once for them all.
  const links = new AgentLinks();
  let key: KeyPair | undefined;
  const signing = () => (key ??= signer(flags, infraFile));
  try {
    await upWith(infraFile, flags, down, { dir, limit, how, fresh, links, signing, log });
  } finally {
    links.closeAll();
  }
}

async function upWith(
  infraFile: string,
  flags: ApplyFlags & { planner: string },
  down: boolean,
  { dir, limit, how, fresh, links, signing, log }: { dir: LocalDir; limit: number; how: LocalAgentOptions; fresh: boolean; links: AgentLinks; signing: () => KeyPair; log: (s: string) => void },
): Promise<void> {
  const keeping = { to: links, signer: signing };
  // The working tree (a `git rev-parse`, a process of its own) is opened once, first: the load
  // reads the file from it, and the apply the blobs it uploads.
  const opening = WorkingTreeSource.open(path.dirname(path.resolve(infraFile)));
  // The local agents start (~0.8 s each) while the file's binaries and config files are read and
  // hashed (WordCount's 200 MB of input: ~0.9 s), from the machines of its parse. A file that then
  // does not load changes nothing: the agents this started are stopped again, before its error.
  const early = down ? null : startAgentsFromParse(infraFile, dir, limit, how, keeping);
  // Agents already running (an `up` after the first): reached now, while the file loads.
  const reaching = down || early !== null ? null : reachRecordedAgents(dir, keeping);
  let infra: LoadedInfra;
  try {
    infra = await loadFromWorkingTree(infraFile, opening);
  } catch (err) {
    await reaching;
    const r = await early;
    if (r !== null) {
      // Stopped, and, where this `up` made .lowcloud/, what it made there (the operator key, the agents' state) removed.
      const stopped = await awaitExit(stopAgentsOf(dir, r.started, () => undefined), 5000);
      if (fresh && stopped) removeMadeState(dir, r);
    }
    throw err;
  }
  if (!down) {
    await reaching;
    const r = await early;
    for (const line of r?.lines ?? []) log(line);
    if (r && r.error !== null) throw r.error;
    // Those the parse did not give (a file too big to parse twice, or changed in between): started now.
    const rest = Object.fromEntries(Object.entries(infra.machines).filter(([m]) => !(r?.running.includes(m) ?? false)));
    const late = await startLocalAgents(dir, rest, limit, how, keeping);
    for (const line of late.lines) log(line);
    if (late.error !== null) throw late.error;
  }
  const endpoints = localEndpoints(dir, infra.machines);
  const { live, statuses, unreachable } = await readLive(infra, endpoints, signing(), limit, links);
  if (unreachable.size > 0 && !down) {
    throw new AgentUnreachableError([...unreachable].map(([m, e]) => `${m}: ${e.message}`).join('\n'));
  }
  const target: LoadedInfra = down ? { ...infra, processes: {} } : infra;
  const doc = livePlanDocument(live, statuses, target, flags.planner);
  process.stdout.write(doc.calls.length === 0 ? `${summaryLine(doc).replace('the base', 'the live state')}\n` : renderHuman(doc));
  if (doc.calls.length > 0) await runApply(doc, flags, endpoints, infraFile, { opening, links, signer: signing() });
  if (down && process.exitCode !== 1) stopLocalAgents(dir, infra.machines, log);
}

/** Files up to this size are parsed once more, alone, so that `up` can start local agents early. */
const EARLY_PARSE_MAX = 1 << 20;

/**
 * `up`'s local agents, started from the parse of the file alone (the machines), before its files
 * are read and hashed; null when the file is too big to parse twice or does not parse (its load
 * then says why, and no agent was started).
 */
function startAgentsFromParse(infraFile: string, dir: LocalDir, limit: number, how: LocalAgentOptions, keeping: LinkKeeping): Promise<LocalAgentsStarted> | null {
  let machines: Record<string, ResolvedMachine>;
  try {
    // Agents already running (an `up` after the first): nothing to start early, and no second
    // parse (a 1,000-process file: ~60-100 ms of the command's CPU). A machine new in the file
    // gets its agent after the load.
    if (anyLocalAgentRecorded(dir)) return null;
    if (statSync(infraFile).size > EARLY_PARSE_MAX) return null;
    const { value } = parseInfra(readFileSync(infraFile, 'utf8'), infraFile);
    machines = Object.fromEntries(
      Object.entries(value.machines)
        .filter(([, m]) => m.agent === 'local')
        .map(([name, m]) => [name, { name, agent: m.agent, address: machineAddress(m), ...(m.key === undefined ? {} : { key: m.key }), capacity: {} }]),
    );
  } catch {
    return null;
  }
  return startLocalAgents(dir, machines, limit, how, keeping);
}

/** The plan from what the agents run now to `target`; it records each agent's generation. */
function livePlanDocument(live: PlanState, statuses: Map<string, AgentStatus>, target: PlanInfra, planner: string): PlanDocument {
  const generations = Object.fromEntries([...statuses].map(([m, s]) => [m, s.generation]));
  return buildDocument(getPlanner(planner).plan(live, target), { ...live, label: 'live state' }, target, generations);
}

/** `lowcloud plan --live`: plan against what the agents run now (drift included), not a git revision. */
export async function planLive(infraFile: string, planner: string, flags: { key?: string | undefined; parallelism: string }): Promise<PlanDocument> {
  // A big file is loaded in a worker thread while the agents are asked (load.ts).
  const { target, live, statuses, unreachable } = await loadForLivePlan({ file: infraFile }, (machines) =>
    readLive({ machines }, localEndpoints(localDir(infraFile), machines), signer(flags, infraFile), parallelism(flags)),
  );
  if (unreachable.size > 0) {
    throw new AgentUnreachableError(`cannot plan against live state without every agent:\n${[...unreachable].map(([m, e]) => `${m}: ${e.message}`).join('\n')}`);
  }
  return livePlanDocument(live, statuses, target, planner);
}

/** Why an agent could not be checked: its pinned key did not check out, or it was not reached, or it refused. */
export type AgentProblem = 'wrong-key' | 'unreachable' | 'refused';

function agentProblem(err: Error): AgentProblem {
  const code = (err as LowcloudError).code;
  if (code === ErrorCode.AGENT_KEY_MISMATCH) return 'wrong-key';
  if (code === ErrorCode.AGENT_UNREACHABLE || !(err instanceof LowcloudError)) return 'unreachable';
  return 'refused';
}

const PROBLEM_TEXT: Record<AgentProblem, string> = { 'wrong-key': 'wrong key', unreachable: 'unreachable', refused: 'refused status' };

/**
 * `lowcloud status`: per process, whether the live state matches the file. Exit code: 0 in sync,
 * 2 drift, 1 when any agent could not be checked (unreachable, wrong key, refused) or on error.
 */
export async function status(infraFile: string, json: boolean, flags: { key?: string | undefined; parallelism: string }): Promise<void> {
  const infra = await loadFromWorkingTree(infraFile);
  const { statuses, unreachable } = await readLive(infra, localEndpoints(localDir(infraFile), infra.machines), signer(flags, infraFile), parallelism(flags));
  const problems = new Map([...unreachable].map(([m, e]) => [m, { problem: agentProblem(e), code: (e as LowcloudError).code ?? ErrorCode.AGENT_UNREACHABLE, message: e.message }] as const));
  type Row = {
    process: string;
    machine: string;
    drift: 'ok' | 'missing' | 'extra' | 'different' | AgentProblem;
    state: string | null;
    pid: number | null;
    restarts: number | null;
    usage?: ProcessStatus['usage'];
    /** It runs in a shared guest host (`isolation: shared`). */
    shared?: boolean;
    /** Per grant, the strongest level enforcing it (kernel > runtime > advisory). */
    enforcement?: Record<string, string>;
    /** The guest runs without the kernel wall, and by whose choice: its own (`allowUnwalled`) or the agent's (`--allow-unwalled`). */
    unwalled?: 'allowUnwalled' | '--allow-unwalled';
  };
  const details = (live: ProcessStatus) => {
    const enforcement = strongestLevels(live.enforcement);
    // Reported as running without the wall: no kernel layer around its guest host.
    const unwalled = live.pid !== null && enforcement?.isolation !== undefined && enforcement.isolation !== 'kernel';
    return { usage: live.usage, shared: live.spec.isolation === 'shared', enforcement, ...(unwalled ? { unwalled: live.spec.allowUnwalled === true ? ('allowUnwalled' as const) : ('--allow-unwalled' as const) } : {}) };
  };
  const rows: Row[] = [];
  for (const p of Object.values(infra.processes)) {
    const problem = problems.get(p.machine);
    if (problem !== undefined) {
      rows.push({ process: p.name, machine: p.machine, drift: problem.problem, state: null, pid: null, restarts: null });
      continue;
    }
    const live = statuses.get(p.machine)?.processes.find((x) => x.name === p.name);
    rows.push({
      process: p.name,
      machine: p.machine,
      drift: live === undefined ? 'missing' : live.specDigest === p.digest ? 'ok' : 'different',
      state: live?.state ?? null,
      pid: live?.pid ?? null,
      restarts: live?.restarts ?? null,
      ...(live === undefined ? {} : details(live)),
    });
  }
  for (const [m, st] of statuses) {
    for (const live of st.processes) {
      if (own(infra.processes, live.name)?.machine !== m) rows.push({ process: live.name, machine: m, drift: 'extra', state: live.state, pid: live.pid, restarts: live.restarts, ...details(live) });
    }
  }
  rows.sort((a, b) => compare(a.machine, b.machine) || compare(a.process, b.process));
  const drift = rows.filter((r) => r.drift !== 'ok').length;
  process.exitCode = problems.size > 0 ? 1 : drift > 0 ? 2 : 0;
  if (json) {
    const agents = Object.fromEntries([...problems].map(([m, p]) => [m, p]));
    process.stdout.write(`${JSON.stringify({ format_version: '1', processes: rows, agents, unreachable: Object.fromEntries([...unreachable].map(([m, e]) => [m, e.message])) }, null, 2)}\n`);
  } else {
    const headline =
      problems.size > 0
        ? `Not checked: ${[...problems].map(([m, p]) => `${m} (${PROBLEM_TEXT[p.problem]})`).join(', ')}; ${drift} of ${rows.length} process(es) differ or are unknown.`
        : drift === 0
          ? `In sync: ${rows.length} process(es) match ${infraFile}.`
          : `Drift: ${drift} of ${rows.length} process(es) differ from ${infraFile}.`;
    process.stdout.write(`${headline}\n`);
    for (const r of rows) {
      const usage = r.usage === null || r.usage === undefined ? '' : `  mem ${formatSize(r.usage.memoryBytes)}${r.usage.level?.memory === 'guest' ? ' linear' : ''} cpu ${r.usage.cpuSeconds.toFixed(1)}s${hostFigures(r)}${diskText(r.usage)}`;
      const enforced = r.enforcement === undefined ? '' : `  [${Object.entries(r.enforcement).map(([g, l]) => `${g}:${l}`).join(' ')}]`;
      const unwalled = r.unwalled === undefined ? '' : r.unwalled === 'allowUnwalled' ? '  UNWALLED by its own opt-in (allowUnwalled)' : '  UNWALLED (agent --allow-unwalled)';
      process.stdout.write(`  ${r.machine.padEnd(10)} ${r.process.padEnd(14)} ${r.drift.padEnd(11)} ${r.state ?? '-'}${r.pid === null ? '' : ` pid ${r.pid}`}${r.restarts ? ` restarts ${r.restarts}` : ''}${usage}${enforced}${unwalled}\n`);
    }
    for (const [m, p] of problems) process.stdout.write(`  ${m}: ${PROBLEM_TEXT[p.problem]}: ${p.message}\n`);
  }
}

/**
 * A shared guest's CPU or memory that are its host's (the host all its guests share did not answer
 * in time, or cannot measure per guest): said, so 1,000 guests do not each seem to use the host's.
 */
function hostFigures(r: { shared?: boolean; usage?: ProcessStatus['usage'] }): string {
  const level = r.usage?.level;
  if (level === undefined || r.shared !== true) return '';
  const host = [level.memory === 'host' ? 'mem' : '', level.cpu === 'host' ? 'cpu' : ''].filter((x) => x !== '');
  return host.length === 0 ? '' : ` (${host.join(' and ')} of its shared host)`;
}

/** The disk figure with its age: it comes from the agent's background walk, not from this call. */
export function diskText(u: NonNullable<ProcessStatus['usage']>, now = Date.now()): string {
  const at = u.diskMeasuredAt === null ? NaN : Date.parse(u.diskMeasuredAt);
  if (!Number.isFinite(at)) return ''; // not measured yet (or a figure this client cannot date)
  const s = Math.max(0, Math.round((now - at) / 1000));
  return ` disk ${formatSize(u.diskBytes)} (${s < 120 ? `${s}s` : `${Math.round(s / 60)}m`} ago)`;
}

/** The strongest enforcement level of each grant, from an agent's enforcement report. */
function strongestLevels(report: ProcessStatus['enforcement']): Record<string, string> | undefined {
  if (report === null) return undefined;
  const out: Record<string, string> = {};
  for (const [grant, entries] of Object.entries(report) as [string, Enforcement[]][]) {
    const best = entries.map((e) => e.level).sort((x, y) => ENFORCEMENT_LEVELS.indexOf(x) - ENFORCEMENT_LEVELS.indexOf(y))[0];
    if (best !== undefined) out[grant] = best;
  }
  return out;
}

/** `lowcloud logs`: the last lines of a process's log, from the agent of the machine the file names. */
export async function logs(infraFile: string, processName: string, opts: { tail: string; follow?: boolean; key?: string }): Promise<void> {
  const infra = await loadFromWorkingTree(infraFile);
  const proc = own(infra.processes, processName);
  if (proc === undefined) throw new UnknownNameError(infraFile, 'process', processName, Object.keys(infra.processes).sort());
  const tail = Number(opts.tail);
  if (!Number.isInteger(tail) || tail < 0) throw new FlagError(`--tail ${opts.tail}: give a whole number of lines, 0 or more`);
  const { clients, errors } = await connectAll(localEndpoints(localDir(infraFile), infra.machines), [proc.machine], signer(opts, infraFile));
  const client = clients.get(proc.machine);
  if (client === undefined) throw errors.get(proc.machine) ?? new AgentUnreachableError(`machine ${proc.machine}: no agent`);
  await client.logs(processName, { tail, follow: opts.follow === true }, (line) => process.stdout.write(`${line}\n`));
  if (opts.follow !== true) {
    client.close();
    return;
  }
  // Following: until interrupted, or until the agent goes away.
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
    client.onClose(resolve);
  });
  client.close();
}

/** `lowcloud events`: follow what happens to processes on every machine of the file, as it happens. */
export async function events(infraFile: string, opts: { machine?: string; json?: boolean; key?: string }): Promise<void> {
  const infra = await loadFromWorkingTree(infraFile);
  const names = opts.machine === undefined ? Object.keys(infra.machines).sort() : [opts.machine];
  if (opts.machine !== undefined && own(infra.machines, opts.machine) === undefined) {
    throw new UnknownNameError(infraFile, 'machine', opts.machine, Object.keys(infra.machines).sort());
  }
  const { clients, errors } = await connectAll(localEndpoints(localDir(infraFile), infra.machines), names, signer(opts, infraFile));
  for (const [m, e] of errors) process.stderr.write(`${m}: not watching: ${e.message}\n`);
  if (clients.size === 0) throw new AgentUnreachableError('no agent of this file could be reached');
  const closed = new Promise<void>((resolve) => {
    let open = clients.size;
    for (const [m, c] of clients) {
      c.onClose(() => {
        process.stderr.write(`${m}: connection closed\n`);
        if (--open === 0) resolve();
      });
    }
  });
  for (const [m, c] of clients) {
    await c.watch((e) => {
      const line = opts.json === true
        ? JSON.stringify({ machine: m, ...e })
        : `${e.at}  ${m.padEnd(10)} ${e.process.padEnd(14)} ${e.kind.padEnd(14)}${e.pid === undefined ? '' : ` pid ${e.pid}`}${e.grant === undefined ? '' : `  ${e.grant}:`}${e.detail === undefined ? '' : `${e.grant === undefined ? '  ' : ' '}${e.detail}`}`;
      process.stdout.write(`${line}\n`);
    });
  }
  process.stderr.write(`watching ${[...clients.keys()].join(', ')}; Ctrl-C to stop\n`);
  await Promise.race([closed, new Promise<void>((resolve) => (process.once('SIGINT', resolve), process.once('SIGTERM', resolve)))]);
  for (const c of clients.values()) c.close();
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
