import fs from 'node:fs';
import path from 'node:path';
import { specDigest, type ProcessSpec } from '@lowcloud/api';
import { writeFileDurable } from './durable.js';
import { crashPoint } from './test-hooks.js';

export interface DesiredState {
  generation: number;
  processes: Record<string, { spec: ProcessSpec; specDigest: string }>;
}

/** The agent's desired state: what it was told to run. Persisted before any call is acknowledged. */
export class StateStore {
  private state: DesiredState;
  private readonly file: string;

  constructor(dir: string) {
    this.file = path.join(dir, 'state.json');
    this.state = fs.existsSync(this.file) ? (JSON.parse(fs.readFileSync(this.file, 'utf8')) as DesiredState) : { generation: 0, processes: {} };
  }

  get generation(): number {
    return this.state.generation;
  }

  get processes(): DesiredState['processes'] {
    return this.state.processes;
  }

  /** Apply a change and persist it durably; the generation goes up by one. */
  commit(change: (processes: DesiredState['processes']) => void): number {
    const next: DesiredState = structuredClone(this.state);
    change(next.processes);
    next.generation += 1;
    writeFileDurable(this.file, JSON.stringify(next, null, 2));
    crashPoint('state-written');
    this.state = next;
    return next.generation;
  }

  set(spec: ProcessSpec): number {
    return this.commit((p) => {
      p[spec.name] = { spec, specDigest: specDigest(spec) };
    });
  }

  remove(name: string): number {
    return this.commit((p) => {
      delete p[name];
    });
  }
}
