// Finds or installs the peer supervisors into bench/work/, so `npm run bench` needs no manual setup:
// pm2 from npm, supervisord from Debian (apt-get, as root), superlance (memmon) from PyPI in a venv.
import { execa } from 'execa';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { projectRoot } from '../../supervisor/paths.js';

export const peersDir = path.join(projectRoot, 'bench', 'work', 'peers');
export const pm2Bin = path.join(peersDir, 'node_modules', '.bin', 'pm2');
export const venvDir = path.join(projectRoot, 'bench', 'work', 'venv');
export const memmonBin = path.join(venvDir, 'bin', 'memmon');

async function which(command: string): Promise<string | undefined> {
  const result = await execa('sh', ['-c', `command -v ${command}`], { reject: false });
  return result.exitCode === 0 ? result.stdout.trim() : undefined;
}

/** Returns a reason per peer that could not be had; an absent key means the peer is ready. */
export async function ensurePeers(log: (line: string) => void): Promise<Record<string, string>> {
  const missing: Record<string, string> = {};
  mkdirSync(peersDir, { recursive: true });
  if (!existsSync(pm2Bin)) {
    log('installing pm2 into bench/work/peers');
    const result = await execa('npm', ['install', '--no-audit', '--no-fund', '--prefix', peersDir, 'pm2@6'], { reject: false });
    if (result.exitCode !== 0) missing.pm2 = `npm install pm2 failed: ${result.stderr.split('\n').slice(-3).join(' ')}`;
  }
  if (!(await which('supervisord'))) {
    if (process.getuid?.() === 0) {
      log('installing supervisor with apt-get');
      await execa('apt-get', ['update', '-qq'], { reject: false });
      await execa('apt-get', ['install', '-y', '-qq', 'supervisor'], { reject: false, env: { DEBIAN_FRONTEND: 'noninteractive' } });
    }
    if (!(await which('supervisord'))) missing.supervisord = 'supervisord is not installed (apt-get install supervisor needs root)';
  }
  if (!existsSync(memmonBin)) {
    log('installing superlance (memmon) into bench/work/venv');
    const venv = await execa('python3', ['-m', 'venv', venvDir], { reject: false });
    const pip = venv.exitCode === 0
      ? await execa(path.join(venvDir, 'bin', 'pip'), ['install', '-q', 'superlance'], { reject: false })
      : venv;
    if (pip.exitCode !== 0 || !existsSync(memmonBin)) missing.supervisord = `superlance install failed: ${pip.stderr.split('\n').slice(-3).join(' ')}`;
  }
  return missing;
}
