import { createRequire } from 'node:module';
import type * as Yaml from 'yaml';

let lib: typeof Yaml | undefined;

/**
 * The `yaml` library, loaded the first time a file needs positions (parse.ts: a problem to report)
 * rather than when this package loads: a valid file never needs it, and loading it cost ~0.04 s in
 * each thread `plan` starts. Loaded synchronously (the library is CommonJS), so parsing stays a
 * plain function.
 */
export function yamlLib(): typeof Yaml {
  return (lib ??= createRequire(import.meta.url)('yaml') as typeof Yaml);
}
