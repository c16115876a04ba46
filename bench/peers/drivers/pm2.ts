// PM2 under test, configured as its users do: an ecosystem file with max_memory_restart, defaults
// otherwise (30 s memory check, 1.6 s kill_timeout, treekill on). Its own PM2_HOME per run.
import { execa } from 'execa';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Driver, Workload } from '../driver.js';
import { pm2Bin } from '../install.js';
import { stopTree } from '../reap.js';

export class Pm2Driver implements Driver {
  readonly name = 'pm2';
  private home = '';

  private run(args: string[]) {
    return execa(pm2Bin, args, { reject: false, env: { PM2_HOME: this.home }, timeout: 60_000 });
  }

  // Read from the package, not `pm2 --version`: that starts a PM2 daemon which outlives the bench.
  async version(): Promise<string> {
    const manifest = JSON.parse(readFileSync(path.join(path.dirname(pm2Bin), '..', 'pm2', 'package.json'), 'utf8')) as { version: string };
    return `pm2 ${manifest.version}`;
  }

  async start(workloads: Workload[], workDir: string): Promise<void> {
    mkdirSync(workDir, { recursive: true });
    this.home = path.join(workDir, 'pm2-home');
    const apps = workloads.map((workload) => ({
      name: workload.name,
      script: workload.argv[1],
      interpreter: workload.argv[0],
      args: workload.argv.slice(2),
      env: workload.env,
      autorestart: false,
      ...(workload.rssLimit ? { max_memory_restart: `${Math.round(workload.rssLimit / 1024 / 1024)}M` } : {}),
    }));
    const ecosystem = path.join(workDir, 'ecosystem.config.cjs');
    writeFileSync(ecosystem, `module.exports = ${JSON.stringify({ apps }, null, 2)};\n`);
    // PM2's CLI starts apps two at a time by default; ten at a time brings 50 idle apps up in a few
    // seconds instead of ~10 s. Start-up only: nothing is measured until every app runs.
    const result = await execa(pm2Bin, ['start', ecosystem], { reject: false, env: { PM2_HOME: this.home, PM2_CONCURRENT_ACTIONS: '10' }, timeout: 60_000 });
    if (result.exitCode !== 0) throw new Error(`pm2 start failed: ${result.stderr || result.stdout}`);
  }

  async stop(name: string): Promise<void> {
    await this.run(['stop', name]);
  }

  supervisorPids(): number[] {
    try {
      return [Number(readFileSync(path.join(this.home, 'pm2.pid'), 'utf8').trim())];
    } catch {
      return [];
    }
  }

  async shutdown(): Promise<number[]> {
    if (!this.home) return [];
    const home = this.home;
    const daemon = this.supervisorPids();
    this.home = '';
    return stopTree(daemon, async () => {
      await execa(pm2Bin, ['kill'], { reject: false, env: { PM2_HOME: home }, timeout: 60_000 });
    });
  }
}
