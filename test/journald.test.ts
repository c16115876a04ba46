// The journald format prefixes `<N>` priorities per line only when writing to the journal.
import test from 'ava';
import { Writable } from 'node:stream';
import winston from 'winston';
import { journaldPriority, writingToJournal } from '../supervisor/journald.js';

function capture(enabled: boolean | undefined): { logger: winston.Logger; lines: () => string } {
  let out = '';
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      out += chunk.toString();
      callback();
    },
  });
  const logger = winston.createLogger({
    levels: winston.config.syslog.levels,
    level: 'debug',
    format: winston.format.combine(winston.format.printf((info) => `${info.level} ${String(info.message)}`), journaldPriority({ enabled })),
    transports: [new winston.transports.Stream({ stream })],
  });
  return { logger, lines: () => out };
}

test('each level gets its syslog priority, on every line of a multi-line message', (t) => {
  const { logger, lines } = capture(true);
  logger.error('boom\n  at frame 1');
  logger.warning('careful');
  logger.info('hello');
  logger.debug('details');
  t.is(lines(), '<3>error boom\n<3>  at frame 1\n<4>warning careful\n<6>info hello\n<7>debug details\n');
});

test('no prefix when not writing to the journal', (t) => {
  const { logger, lines } = capture(false);
  logger.warning('careful');
  t.is(lines(), 'warning careful\n');
});

test('JOURNAL_STREAM decides by default', (t) => {
  t.true(writingToJournal({ JOURNAL_STREAM: '8:12345' }));
  t.false(writingToJournal({}));
});
