// Cron schedules per job: real timers fire, replacing and removing schedules works, bad expressions are
// refused with the field name, and a tick while a run is live is skipped.
import test from 'ava';
import { JobSchedules, skipIfStillRunning, validateSchedule } from '../supervisor/schedule.js';

async function until(predicate: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

test('an every-second schedule fires its job; skip-if-running skips ticks while the job is live', async (t) => {
  const started: string[] = [];
  const skipped: string[] = [];
  const live = new Set<string>();
  const schedules = new JobSchedules(
    skipIfStillRunning(
      (job) => live.has(job),
      (job) => {
        started.push(job);
        live.add(job);
      },
      (job) => skipped.push(job),
    ),
  );
  t.teardown(() => schedules.stopAll());
  schedules.set('tick', '* * * * * *');
  await until(() => started.length === 1, 5000, 'the first tick');
  // The run is still live: the next ticks are skips, not second runs.
  await until(() => skipped.length >= 1, 5000, 'a skipped tick');
  t.deepEqual(started, ['tick']);
  live.delete('tick');
  await until(() => started.length === 2, 5000, 'a tick after the run ended');
  t.deepEqual(started, ['tick', 'tick']);
  t.true(skipped.every((job) => job === 'tick'));
});

test('nextRun, replace, unchanged set keeps the timer, removal, stopAll', (t) => {
  const schedules = new JobSchedules(() => {});
  t.teardown(() => schedules.stopAll());
  t.is(schedules.nextRun('nightly'), null);
  schedules.set('nightly', '30 2 * * *');
  const next = schedules.nextRun('nightly')!;
  t.is(next.getHours(), 2);
  t.is(next.getMinutes(), 30);
  t.true(next.getTime() > Date.now());
  t.true(next.getTime() - Date.now() <= 24 * 3600 * 1000);

  schedules.set('nightly', '30 2 * * *');
  t.deepEqual(schedules.nextRun('nightly'), next);
  schedules.set('nightly', '@hourly');
  t.is(schedules.expression('nightly'), '@hourly');
  t.is(schedules.nextRun('nightly')!.getMinutes(), 0);
  schedules.set('other', '0 0 1 1 *');
  t.deepEqual(schedules.jobs().sort(), ['nightly', 'other']);
  schedules.set('nightly', undefined);
  t.is(schedules.nextRun('nightly'), null);
  t.deepEqual(schedules.jobs(), ['other']);
  schedules.stopAll();
  t.deepEqual(schedules.jobs(), []);
});

test('a bad expression is refused naming jobs.<name>.schedule, and the old schedule stays', (t) => {
  const schedules = new JobSchedules(() => {});
  t.teardown(() => schedules.stopAll());
  schedules.set('nightly', '30 2 * * *');
  t.throws(() => schedules.set('nightly', '61 2 * * *'), { message: /^jobs\.nightly\.schedule: "61 2 \* \* \*" is not a valid cron expression/ });
  t.throws(() => schedules.set('nightly', 'every day'), { message: /^jobs\.nightly\.schedule: "every day" is not a cron expression: expected 5 fields/ });
  t.throws(() => schedules.set('nightly', '2030-01-01T00:00:00'), { message: /is not a cron expression/ });
  t.is(schedules.expression('nightly'), '30 2 * * *');
  t.is(validateSchedule('*/5 * * * *'), null);
  t.is(validateSchedule('0 30 2 * * *'), null);
  t.regex(validateSchedule('* * 31 2 *') ?? 'fires', /never fires|not a valid/);
});

test('a tick callback that throws is reported and the schedule keeps running', async (t) => {
  const errors: string[] = [];
  let ticks = 0;
  const schedules = new JobSchedules(
    (job) => {
      ticks++;
      throw new Error(`boom ${job}`);
    },
    { onError: (job, error) => errors.push(`${job}: ${(error as Error).message}`) },
  );
  t.teardown(() => schedules.stopAll());
  schedules.set('j', '* * * * * *');
  await until(() => ticks >= 2, 5000, 'two ticks');
  t.true(errors.length >= 2);
  t.is(errors[0], 'j: boom j');
});
