#!/usr/bin/env node
// Build step of the web page: tsc compiles web/*.ts into dist/web; this copies the static files beside them.
import { copyFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const target = path.join(root, 'dist', 'web');
mkdirSync(target, { recursive: true });
for (const name of ['index.html', 'style.css']) copyFileSync(path.join(root, 'web', name), path.join(target, name));
