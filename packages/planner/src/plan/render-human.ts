import type { PlanDocument } from './document.js';
import type { Change } from './types.js';
import { own } from '../own.js';

export interface Style {
  add(s: string): string;
  remove(s: string): string;
  change(s: string): string;
  dim(s: string): string;
  bold(s: string): string;
}

const plain: Style = { add: (s) => s, remove: (s) => s, change: (s) => s, dim: (s) => s, bold: (s) => s };
const ansi = (code: number) => (s: string) => `\u001b[${code}m${s}\u001b[0m`;
export const colours: Style = { add: ansi(32), remove: ansi(31), change: ansi(33), dim: ansi(2), bold: ansi(1) };

/**
 * The one-line summary counts processes, not calls:
 * - to start: processes new in the target;
 * - to stop: processes removed from the target;
 * - to restart: processes that stay on their machine but restart (config replaced, or replaced);
 * - to move: processes that move to another machine (a start there and a stop here).
 */
export function summaryLine(doc: PlanDocument): string {
  const n = (r: Change['reason'][]) => doc.changes.filter((c) => r.includes(c.reason)).length;
  const start = n(['new']);
  const stop = n(['removed']);
  const restart = n(['config-changed', 'secret-changed', 'replaced']);
  const move = n(['moved']);
  if (start + stop + restart + move === 0) return 'No changes. The target matches the base.';
  const parts = [`${start} to start`, `${stop} to stop`, `${restart} to restart`];
  if (move > 0) parts.push(`${move} to move`);
  return `Plan: ${parts.join(', ')}.`;
}

export function renderHuman(doc: PlanDocument, style: Style = plain): string {
  const lines = [style.bold(summaryLine(doc))];
  if (doc.calls.length === 0) return `${lines.join('\n')}\n`;
  const byProcess = new Map(doc.changes.map((c) => [c.process, c]));
  const machines = [...new Set(doc.calls.map((c) => c.machine))].sort();
  const width = Math.max(...doc.calls.map((c) => c.process.length));
  for (const m of machines) {
    const info = own(doc.machines, m);
    lines.push('', style.bold(`machine ${m}`) + style.dim(info === undefined ? '' : ` (${info.agent})`));
    for (const call of doc.calls.filter((c) => c.machine === m)) {
      const change = byProcess.get(call.process);
      const sign = call.call === 'start' ? style.add('+') : call.call === 'stop' ? style.remove('-') : style.change('~');
      lines.push(`  ${sign} ${call.call.padEnd(14)} ${call.process.padEnd(width)}  ${style.dim(why(change, call.call))}`);
      if (change !== undefined && (change.reason === 'replaced' || change.reason === 'config-changed' || change.reason === 'secret-changed' || change.reason === 'moved') && call.call !== 'stop') {
        for (const f of change.fields) lines.push(`      ${f.path}: ${f.from} -> ${f.to}`);
      }
      if (change?.note !== undefined && call.call === 'start') lines.push(`      ${style.dim(`note: ${change.note}`)}`);
    }
  }
  lines.push('', style.dim(`${doc.calls.length} call(s) in execution order; planner: ${doc.planner}. Config contents are never shown, only digests.`));
  return `${lines.join('\n')}\n`;
}

function why(change: Change | undefined, call: string): string {
  if (change === undefined) return '';
  switch (change.reason) {
    case 'new':
      return `new process${change.because === undefined ? '' : ` (${change.because.join('; ')})`}`;
    case 'removed':
      return 'removed from the file';
    case 'config-changed':
      return `config changed (${change.paths.map((p) => p.slice('config.'.length)).join(', ')}); restarts once`;
    case 'secret-changed':
      return change.actions.includes('replace-config')
        ? `secret changed (${change.paths.map((p) => p.slice('config.'.length)).join(', ')}); restarts once`
        : `replace: secret changed (${change.paths.join(', ')})`;
    case 'replaced':
      return `replace: ${change.paths.join(', ')} changed${change.because === undefined ? '' : ` (${change.because.join('; ')})`}`;
    case 'moved':
      return call === 'stop'
        ? `moved to ${change.to ?? '?'}`
        : `moved from ${change.from ?? '?'}${change.paths.length > 1 ? `; also ${change.paths.filter((p) => p !== 'machine').join(', ')} changed` : ''}${change.because === undefined ? '' : ` (${change.because.join('; ')})`}`;
  }
}
