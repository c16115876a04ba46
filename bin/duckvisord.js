#!/usr/bin/env node
// Thin launcher: the daemon is compiled TypeScript in dist/ (`npm run build`).
import { main } from '../dist/supervisor/daemon-main.js';

main(process.argv.slice(2));
