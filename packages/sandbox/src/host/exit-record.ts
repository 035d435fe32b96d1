import fs from 'node:fs';
import path from 'node:path';
import { parseGuestExit } from './messages.js';
import type { GuestExit } from '../types.js';

/** The exit record of the guest in a guest host's run directory (runDir/exit.json). */
export function readExitRecord(runDir: string): GuestExit | null {
  return readExitRecordFile(path.join(runDir, 'exit.json'));
}

/**
 * A guest's exit record. The guest host writes it, so for the host it is hostile input: read
 * without following links, bounded, and only a well-formed exit is believed.
 */
export function readExitRecordFile(file: string): GuestExit | null {
  let text: string;
  try {
    const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
    try {
      if (!fs.fstatSync(fd).isFile()) return null;
      const buf = Buffer.alloc(16 * 1024);
      text = buf.subarray(0, fs.readSync(fd, buf, 0, buf.length, 0)).toString('utf8');
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return null; // no record: the guest host did not finish
  }
  return parseExitRecord(text);
}

function parseExitRecord(text: string): GuestExit | null {
  try {
    return parseGuestExit(JSON.parse(text));
  } catch {
    return null; // empty (not finished) or cut short (died while writing it)
  }
}
