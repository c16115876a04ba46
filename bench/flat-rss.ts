// What the benches call a flat RSS: the soak (RSS just after warm-up against the end of a long run) and
// bench/extract (peak RSS on the 1× store against the 10× store) judge growth by this one rule.

/** In words, for the reports. */
export const FLAT_RSS_MEANING = 'at most +10% or +8 MiB';

/** Whether RSS went from `fromBytes` to `toBytes` without growing more than +10% or more than +8 MiB. */
export function isFlatRss(fromBytes: number, toBytes: number): boolean {
  return toBytes <= fromBytes * 1.1 || toBytes - fromBytes <= 8 * 1024 * 1024;
}
