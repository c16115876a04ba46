// duckvisor under test: a real duckvisord with a generated config, driven through duckvisorctl.
import { execa, type ResultPromise } from 'execa';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { stringify } from 'yaml';
import { projectRoot } from '../../../supervisor/paths.js';
import type { Driver, Workload } from '../driver.js';
import { stopTree } from '../reap.js';

const daemonBin = path.join(projectRoot, 'bin', 'duckvisord.js');
const ctlBin = path.join(projectRoot, 'bin', 'duckvisorctl.js');

export class DuckvisorDriver implements Driver {
  readonly name = 'duckvisor';
  private daemon: ResultPromise | undefined;
  private socket = '';

  async version(): Promise<string> {
    const pkg = JSON.parse(readFileSync(path.join(projectRoot, 'package.json'), 'utf8')) as { version: string };
    return `duckvisor ${pkg.version}`;
  }

  async start(workloads: Workload[], workDir: string): Promise<void> {
    mkdirSync(workDir, { recursive: true });
    this.socket = path.join(workDir, 'duckvisor.sock');
    const jobs: Record<string, unknown> = {};
    for (const workload of workloads) {
      jobs[workload.name] = {
        command: workload.argv,
        heartbeat: workload.heartbeat,
        env: workload.env,
        autostart: true,
        limits: {
          ...(workload.rssLimit ? { rss: workload.rssLimit } : {}),
          ...(workload.swapLimit ? { swap: workload.swapLimit } : {}),
        },
        ...(workload.stallTimeout ? { stall_timeout: `${workload.stallTimeout}ms` } : {}),
        ...(workload.heartbeatTimeout ? { heartbeat_timeout: `${workload.heartbeatTimeout}ms` } : {}),
      };
    }
    const config = {
      state_dir: path.join(workDir, 'state'),
      warehouse: path.join(workDir, 'warehouse.duckdb'),
      concurrency: Math.max(1, workloads.length),
      control: { socket: this.socket },
      // Observe the first kill only: no retries, default sampling interval and grace.
      defaults: { retries: { max: 0 } },
      jobs,
    };
    const configFile = path.join(workDir, 'duckvisor.yaml');
    writeFileSync(configFile, stringify(config));
    this.daemon = execa(process.execPath, [daemonBin, '--config', configFile, '--log-format', 'json'], {
      stdout: { file: path.join(workDir, 'daemon.log') },
      stderr: { file: path.join(workDir, 'daemon.err') },
      reject: false,
      cleanup: true,
      forceKillAfterDelay: false,
    });
    const deadline = Date.now() + 20_000;
    while (!existsSync(this.socket)) {
      if (Date.now() > deadline) throw new Error(`duckvisord did not create ${this.socket}; see ${workDir}/daemon.err`);
      if (this.daemon.exitCode !== null) throw new Error(`duckvisord exited early; see ${workDir}/daemon.err`);
      await sleep(20);
    }
  }

  async stop(name: string): Promise<void> {
    await execa(process.execPath, [ctlBin, '--socket', this.socket, 'stop', name], { reject: false });
  }

  supervisorPids(): number[] {
    return this.daemon?.pid ? [this.daemon.pid] : [];
  }

  async shutdown(): Promise<number[]> {
    const daemon = this.daemon;
    if (!daemon?.pid) return [];
    this.daemon = undefined;
    return stopTree([daemon.pid], async () => {
      // SIGTERM, as systemd stops it: the same graceful shutdown as `duckvisorctl shutdown`, without
      // starting a CLI process for it.
      daemon.kill('SIGTERM');
      const exited = await Promise.race([daemon.then(() => true), sleep(30_000, undefined, { ref: false }).then(() => false)]);
      if (!exited) daemon.kill('SIGKILL');
      await daemon;
    });
  }
}
