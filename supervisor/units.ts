// Human units in config and output: sizes ("512MiB", "4GiB", "200MB", plain bytes) and durations
// ("250ms", "60s", "5m", "1h30m"). Parsing is strict so that a typo is an error, never a silent zero.

const sizeFactors: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1000,
  kb: 1000,
  m: 1000 ** 2,
  mb: 1000 ** 2,
  g: 1000 ** 3,
  gb: 1000 ** 3,
  t: 1000 ** 4,
  tb: 1000 ** 4,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
};

const durationFactors: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

/** Parses a size into bytes; returns undefined when the text is not a size. */
export function parseSize(input: string | number): number | undefined {
  if (typeof input === 'number') return Number.isFinite(input) && input >= 0 ? Math.floor(input) : undefined;
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(input);
  if (!match) return undefined;
  const factor = sizeFactors[match[2]!.toLowerCase()];
  if (factor === undefined) return undefined;
  return Math.floor(Number(match[1]) * factor);
}

/** Parses a duration into milliseconds ("1h30m" allowed); returns undefined when it is not one. */
export function parseDuration(input: string | number): number | undefined {
  if (typeof input === 'number') return Number.isFinite(input) && input >= 0 ? input * 1000 : undefined;
  const text = input.trim();
  if (text === '') return undefined;
  const part = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/y;
  let total = 0;
  let offset = 0;
  while (offset < text.length) {
    part.lastIndex = offset;
    const match = part.exec(text);
    if (!match) return undefined;
    total += Number(match[1]) * durationFactors[match[2]!]!;
    offset = part.lastIndex;
  }
  return total;
}

// The formatting half is shared with the web page, which compiles separately (DOM lib, no Node types).
export { formatBytes, formatDuration } from '../web/human-units.js';
