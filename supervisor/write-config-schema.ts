// Regenerates config/duckvisor.schema.json from the zod schema (run after changing config-schema.ts):
//   npx tsc -p . && node dist/supervisor/write-config-schema.js
// test/config.test.ts fails while the committed file is out of date.

import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { configJsonSchema } from './config-schema.js';
import { projectRoot } from './paths.js';

/** Where the JSON Schema of duckvisor.yaml is committed. */
export const configSchemaFile = path.join(projectRoot, 'config', 'duckvisor.schema.json');

/** The exact text the committed schema file must have. */
export function configSchemaText(): string {
  return `${JSON.stringify(configJsonSchema(), null, 2)}\n`;
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(path.join(projectRoot, 'dist', 'supervisor', 'write-config-schema.js'))) {
  writeFileSync(configSchemaFile, configSchemaText());
  console.log(`wrote ${path.relative(process.cwd(), configSchemaFile)}`);
}
