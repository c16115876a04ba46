// Environment a built-in extractor child is started with, on top of the run's own variables.
//
// glibc gives each allocating thread its own malloc arena (up to 8 per core), and DuckDB's worker
// threads keep filling theirs as a run writes more rows: a child's RSS then grows with the size of the
// store (10× seed store, mlflow-metric-history: 159–166 MiB by default, 143–152 MiB with two arenas).
// glibc reads MALLOC_ARENA_MAX once at process start, so the SDK cannot set it for itself: whoever
// spawns the child does. A value the operator set (job env or the daemon's own) wins.
export function extractorProcessEnv(inherited: Readonly<Record<string, string | undefined>>): Record<string, string> {
  return inherited['MALLOC_ARENA_MAX'] === undefined ? { MALLOC_ARENA_MAX: '2' } : {};
}
