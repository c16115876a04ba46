// Which experiments an `experiments` option (ids or names) picks: one rule for the extractors
// (selection.ts) and for the tracking-server listing started before them (rest-store.ts startSelection),
// so that the early listing is the one the extractor asks for. No zod here: the early start loads this.
import type { Experiment } from './types.js';

/** The experiments `refs` names, in order, each once: an id first, then a name; all of them without refs. `missing`: the first ref that names none. */
export function chooseExperiments(all: readonly Experiment[], refs: readonly string[] | undefined): { chosen: Experiment[] } | { missing: string } {
  if (refs === undefined) return { chosen: [...all] };
  const chosen: Experiment[] = [];
  for (const ref of refs) {
    const found = all.find((e) => e.experimentId === ref) ?? all.find((e) => e.name === ref);
    if (found === undefined) return { missing: ref };
    if (!chosen.includes(found)) chosen.push(found);
  }
  return { chosen };
}
