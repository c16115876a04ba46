import test from 'ava';
import { PassThrough } from 'node:stream';
import { createLog } from '../supervisor/log.js';

function capture(options: Parameters<typeof createLog>[0]) {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (chunk) => (text += chunk));
  const log = createLog({ ...options, stream });
  return { log, text: () => text };
}

test('human lines carry time, level, message and fields', (t) => {
  const { log, text } = capture({ journal: false });
  log.child({ job: 'mlflow-runs' }).warn('killing (memory)', { measured: 600 });
  t.regex(text(), /^\d{4}-\d{2}-\d{2}T[\d:.]+Z warn  killing \(memory\) job=mlflow-runs measured=600\n$/);
});

test('JSON lines are one object per line', (t) => {
  const { log, text } = capture({ format: 'json', journal: false });
  log.info('ready', { pid: 42 });
  log.error('two\nlines');
  const lines = text().trim().split('\n').map((line) => JSON.parse(line));
  t.like(lines[0], { level: 'info', msg: 'ready', pid: 42 });
  t.like(lines[1], { level: 'error', msg: 'two\nlines' });
});

test('under journald every line gets its <N> syslog priority, continuation lines too', (t) => {
  const { log, text } = capture({ env: { JOURNAL_STREAM: '8:1234' } });
  log.error('boom\nstack line');
  log.warn('careful');
  log.info('fine');
  log.debug('hidden at info level');
  t.is(text(), '<3>error boom\n<3>    stack line\n<4>warn  careful\n<6>info  fine\n');
  const json = capture({ env: { JOURNAL_STREAM: '8:1234' }, format: 'json', level: 'debug' });
  json.log.debug('d');
  t.regex(json.text(), /^<7>\{"time":"[^"]+","level":"debug","msg":"d"\}\n$/);
});
