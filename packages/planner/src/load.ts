import path from 'node:path';
import { GitRevisionSource, loadInfra, WorkingTreeSource, type ResolvedInfra } from '@lowcloud/api';

export type LoadedInfra = ResolvedInfra & { label: string; file: string };

/** An infra file from the working tree; files it references are relative to its directory. */
export async function loadFromWorkingTree(file: string): Promise<LoadedInfra> {
  const abs = path.resolve(file);
  const r = await loadInfra(file, path.basename(abs), await WorkingTreeSource.open(path.dirname(abs)));
  return { ...r, label: file, file };
}

/** The same infra file, and every file it references, as they were at a git revision. */
export async function loadFromGit(file: string, revision: string): Promise<LoadedInfra> {
  const abs = path.resolve(file);
  const source = await GitRevisionSource.open(path.dirname(abs), revision);
  try {
    const label = `${file}@${revision}`;
    const r = await loadInfra(label, path.basename(abs), source);
    return { ...r, label, file };
  } finally {
    source.close();
  }
}
