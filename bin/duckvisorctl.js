#!/usr/bin/env node
// Thin launcher: the control CLI is compiled TypeScript in dist/ (`npm run build`).
import { main } from '../dist/supervisor/ctl.js';

main(process.argv.slice(2));
