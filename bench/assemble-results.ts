// Builds bench/RESULTS.md from bench/results/*.md. Each benchmark writes its own section file with
// the command that reproduces it; this file only concatenates them in a fixed order.
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { projectRoot } from '../supervisor/paths.js';

const order = ['peers', 'kill-latency', 'sdk-write', 'extract', 'derived', 'lint', 'api-latency', 'soak'];

export function assembleResults(): string {
  const dir = path.join(projectRoot, 'bench', 'results');
  const files = existsSync(dir) ? readdirSync(dir).filter((file) => file.endsWith('.md')) : [];
  const rank = (file: string) => {
    const index = order.indexOf(file.replace(/\.md$/, ''));
    return index === -1 ? order.length : index;
  };
  files.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  const sections = files.map((file) => readFileSync(path.join(dir, file), 'utf8').trim());
  const text = [
    '# Benchmark results',
    '',
    'Generated from `bench/results/*.md` by `npm run bench` (do not edit by hand). Each section names',
    'the command that reproduces it and the machine it ran on.',
    '',
    ...sections.flatMap((section) => [section, '']),
  ].join('\n');
  writeFileSync(path.join(projectRoot, 'bench', 'RESULTS.md'), text);
  return text;
}
