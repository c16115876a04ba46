// supervisord + superlance memmon under test, configured as their users do: memmon as an event listener
// on TICK_60 (its documented recommendation) with -c (whole tree), stopasgroup/killasgroup on.
import { execa, type ResultPromise } from 'execa';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Driver, Workload } from '../driver.js';
import { memmonBin } from '../install.js';
import { allPids, descendantsOf, readCmdline } from '../proc-watch.js';
import { stopTree } from '../reap.js';

function quoteEnv(value: string): string {
  return `"${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

export class SupervisordDriver implements Driver {
  readonly name = 'supervisord+memmon';
  private daemon: ResultPromise | undefined;
  private configFile = '';

  constructor(private readonly tick: 'TICK_60' | 'TICK_5' = 'TICK_60') {}

  async version(): Promise<string> {
    const supervisord = await execa('supervisord', ['--version'], { reject: false });
    const superlance = await execa(path.join(path.dirname(memmonBin), 'pip'), ['show', 'superlance'], { reject: false });
    const superlanceVersion = /^Version: (.+)$/m.exec(superlance.stdout)?.[1] ?? '?';
    return `supervisord ${supervisord.stdout.trim()}, superlance ${superlanceVersion} (memmon ${this.tick})`;
  }

  async start(workloads: Workload[], workDir: string): Promise<void> {
    mkdirSync(workDir, { recursive: true });
    const socket = path.join(workDir, 'supervisor.sock');
    const sections = [
      '[unix_http_server]',
      `file=${socket}`,
      '[supervisord]',
      `logfile=${path.join(workDir, 'supervisord.log')}`,
      `pidfile=${path.join(workDir, 'supervisord.pid')}`,
      `childlogdir=${workDir}`,
      'nodaemon=true',
      '[rpcinterface:supervisor]',
      'supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface',
      '[supervisorctl]',
      `serverurl=unix://${socket}`,
    ];
    const memmonLimits: string[] = [];
    for (const workload of workloads) {
      sections.push(
        `[program:${workload.name}]`,
        `command=${workload.argv.join(' ')}`,
        `environment=${Object.entries(workload.env).map(([key, value]) => `${key}=${quoteEnv(value)}`).join(',')}`,
        'autostart=true',
        'autorestart=false',
        'startsecs=0',
        'stopasgroup=true',
        'killasgroup=true',
      );
      if (workload.rssLimit) memmonLimits.push(`-p ${workload.name}=${Math.round(workload.rssLimit / 1024 / 1024)}MB`);
    }
    if (memmonLimits.length > 0) {
      sections.push('[eventlistener:memmon]', `command=${memmonBin} -c ${memmonLimits.join(' ')}`, `events=${this.tick}`);
    }
    this.configFile = path.join(workDir, 'supervisord.conf');
    writeFileSync(this.configFile, sections.join('\n') + '\n');
    // No forced SIGKILL on supervisord while it stops its programs (execa's default is 5 s): it would
    // die midway and orphan every program it had not stopped yet.
    this.daemon = execa('supervisord', ['-c', this.configFile], { reject: false, stdout: 'ignore', stderr: 'ignore', forceKillAfterDelay: false });
    const deadline = Date.now() + 20_000;
    while (!existsSync(socket)) {
      if (Date.now() > deadline || this.daemon.exitCode !== null) throw new Error(`supervisord did not start; see ${workDir}`);
      await sleep(20);
    }
  }

  async stop(name: string): Promise<void> {
    await execa('supervisorctl', ['-c', this.configFile, 'stop', name], { reject: false, timeout: 60_000 });
  }

  supervisorPids(): number[] {
    const pid = this.daemon?.pid;
    if (!pid) return [];
    // supervisord plus its event listeners (memmon), which are part of what a user runs to get limits.
    const listeners = descendantsOf(pid, allPids).filter((child) => readCmdline(child).includes('memmon'));
    return [pid, ...listeners];
  }

  async shutdown(): Promise<number[]> {
    const daemon = this.daemon;
    if (!daemon?.pid) return [];
    this.daemon = undefined;
    return stopTree([daemon.pid], async () => {
      daemon.kill('SIGTERM');
      const exited = await Promise.race([daemon.then(() => true), sleep(60_000, undefined, { ref: false }).then(() => false)]);
      if (!exited) daemon.kill('SIGKILL');
      await daemon;
    });
  }
}
