// Matching a call against `name` / `receiver.name` patterns with `*` wildcards (see config.ts).

/** Lower-cases and drops underscores so snake_case and camelCase spellings compare equal. */
export function normalizeName(name: string): string {
  return name.toLowerCase().replace(/_/g, '');
}

function segmentRegex(segment: string): RegExp {
  const escaped = normalizeName(segment)
    .split('*')
    .map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
    .join('.*');
  return new RegExp(`^${escaped}$`);
}

interface CompiledPattern {
  receiver: RegExp | undefined;
  name: RegExp;
}

/** A compiled pattern list; `matches(name, receiver)` answers whether a call is listed. */
export class CallMatcher {
  private readonly compiled: CompiledPattern[];

  constructor(patterns: readonly string[]) {
    this.compiled = patterns.map((pattern) => {
      const dot = pattern.lastIndexOf('.');
      return dot < 0
        ? { receiver: undefined, name: segmentRegex(pattern) }
        : { receiver: segmentRegex(pattern.slice(0, dot)), name: segmentRegex(pattern.slice(dot + 1)) };
    });
  }

  /** `receiver` is the last segment of the callee's receiver (`client` for `self.client.search_runs`). */
  matches(name: string, receiver: string | undefined): boolean {
    const normalizedName = normalizeName(name);
    const normalizedReceiver = receiver === undefined ? undefined : normalizeName(receiver);
    return this.compiled.some(
      (pattern) =>
        pattern.name.test(normalizedName) &&
        (pattern.receiver === undefined ||
          (normalizedReceiver !== undefined && pattern.receiver.test(normalizedReceiver))),
    );
  }
}
