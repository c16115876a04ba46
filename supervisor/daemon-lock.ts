// One daemon per state directory: <state_dir>/daemon.lock holds "pid start-time"; a lock whose process is
// gone (or is a different process with a reused pid) is stale and replaced.
import { linkSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { isSameProcessAlive, processStartTime } from './recovery.js';

/** Thrown when another live daemon holds the state directory. */
export class StateDirLockedError extends Error {
  override name = 'StateDirLockedError';
  constructor(readonly lockFile: string, readonly holderPid: number) {
    super(
      `another duckvisord (pid ${holderPid}) is already running on state dir ${path.dirname(lockFile)} ` +
        `(lock ${lockFile}); stop it first (duckvisorctl shutdown) or use a different state_dir`,
    );
  }
}

export interface DaemonLock {
  readonly file: string;
  release(): void;
}

/** Takes the state directory's lock for this process, replacing a stale one; throws StateDirLockedError when held. */
export function acquireStateDirLock(stateDir: string): DaemonLock {
  mkdirSync(stateDir, { recursive: true });
  const file = path.join(stateDir, 'daemon.lock');
  const content = `${process.pid} ${processStartTime(process.pid) ?? ''}\n`;
  const temp = `${file}.${process.pid}.tmp`;
  writeFileSync(temp, content, { mode: 0o600 });
  try {
    for (let tries = 0; tries < 5; tries += 1) {
      try {
        linkSync(temp, file); // atomic: fails with EEXIST when a lock exists
        return {
          file,
          release() {
            try {
              if (readFileSync(file, 'utf8') === content) unlinkSync(file);
            } catch {
              // already gone
            }
          },
        };
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
      let holder: string;
      try {
        holder = readFileSync(file, 'utf8');
      } catch {
        continue; // removed meanwhile; try again
      }
      const [pidText, startTime] = holder.trim().split(/\s+/);
      const pid = Number(pidText);
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && isSameProcessAlive(pid, startTime || undefined)) {
        throw new StateDirLockedError(file, pid);
      }
      try {
        unlinkSync(file); // stale
      } catch {
        // someone else removed it
      }
    }
    throw new Error(`could not take the lock ${file} after 5 attempts; is another duckvisord starting right now?`);
  } finally {
    try {
      unlinkSync(temp);
    } catch {
      // ignore
    }
  }
}
