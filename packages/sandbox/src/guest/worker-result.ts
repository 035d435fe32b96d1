/** What the guest's worker thread reports to its guest host when the guest ends. */
export type WorkerResult = { kind: 'exit'; code: number } | { kind: 'trap'; message: string } | { kind: 'violation'; grant: 'disk' | 'memory' | 'gpu'; detail: string } | { kind: 'unwound' };
