import path from 'node:path';
import { GitRevisionSource, loadInfra, loadInfraDigests, WorkingTreeSource, type ResolvedDigests, type ResolvedInfra } from '@lowcloud/api/infra';

// Loading one infra file, from the working tree or a git revision. Apart from load.ts (the two
// sides of a plan, and their workers) so that a side worker (load-worker.ts) loads this and the
// api's infra entry only, not the plan code or the api's barrel.

export type LoadedInfra = ResolvedInfra & { label: string; file: string };

/**
 * An infra file from the working tree; files it references are relative to its directory.
 * `opening`: its directory's working tree, opened already (`up` reads its blobs from it too).
 */
export async function loadFromWorkingTree(file: string, opening?: Promise<WorkingTreeSource>): Promise<LoadedInfra> {
  return fromWorkingTree(file, loadInfra, opening);
}

/** The same infra file, and every file it references, as they were at a git revision. */
export async function loadFromGit(file: string, revision: string): Promise<LoadedInfra> {
  return fromGit(file, revision, loadInfra);
}

/**
 * A side as its worker loads it: checked as loadFromWorkingTree or loadFromGit check it (the same
 * errors), kept as each process's name, machine and digest (loadInfraDigests). `opening`: the
 * file's working tree, opened already (load-worker.ts starts it first).
 */
export async function loadDigests(side: PlanSide, opening?: Promise<WorkingTreeSource>): Promise<ResolvedDigests & { label: string; file: string }> {
  return side.revision === undefined ? fromWorkingTree(side.file, loadInfraDigests, opening) : fromGit(side.file, side.revision, loadInfraDigests);
}

type Loader<T> = (fileLabel: string, relPath: string, source: Parameters<typeof loadInfra>[2]) => Promise<T>;

async function fromWorkingTree<T>(file: string, load: Loader<T>, opening?: Promise<WorkingTreeSource>): Promise<T & { label: string; file: string }> {
  const abs = path.resolve(file);
  const r = await load(file, path.basename(abs), await (opening ?? WorkingTreeSource.open(path.dirname(abs))));
  return { ...r, label: file, file };
}

async function fromGit<T>(file: string, revision: string, load: Loader<T>): Promise<T & { label: string; file: string }> {
  const abs = path.resolve(file);
  const source = await GitRevisionSource.open(path.dirname(abs), revision);
  try {
    const label = `${file}@${revision}`;
    const r = await load(label, path.basename(abs), source);
    return { ...r, label, file };
  } finally {
    source.close();
  }
}

/** One side of `lowcloud plan`: a file of the working tree, or the file at a git revision. */
export interface PlanSide {
  file: string;
  revision?: string;
}
