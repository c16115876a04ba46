// Built-in extractor `curves`: ROC and calibration curves per run from prediction artifacts, with AUROC
// and Brier recomputed and compared with the metrics the run logged.
//
// Where predictions come from (option `source`):
//   - 'artifacts' (default): files listed in the warehouse `artifacts(run_id, path, size)` table whose
//     path matches `artifact_path` (`*` = any characters, '/' included) and ends in .csv, .parquet or
//     .npy, read from the run's `artifact_uri` (file:// URI or local path; `artifact_uri_rewrite`
//     maps a moved store; relative URIs resolve against `artifact_base_dir`). Other schemes (s3://,
//     mlflow-artifacts:/ …) cannot be read here: use source 'table' instead.
//   - 'table': a warehouse table (`predictions_table`) with run_id and the y_true/y_prob columns, e.g.
//     a tabular-artifact table; when it has an `artifact_path` column each path is its own curve.
// One unit = one (run, artifact). A bad artifact (unreadable, one class only, probabilities outside
// [0, 1]) is skipped with the reason (ctx.skip) and the other runs go on.
//
// Semantics (see extractors/derived/stats.ts): ROC = sklearn.metrics.roc_curve with
// drop_intermediate = `drop_intermediate` (default true, sklearn's default; the first threshold is
// +Infinity); AUROC = roc_auc_score; Brier = brier_score_loss; calibration = calibration_curve
// strategy 'uniform' with `n_bins` bins (empty bins omitted). A recomputed value that differs from the
// logged metric by more than `tolerance` is a mismatch: a warning in the run log and a TRUE column.
//
// Tables (with the optional `output_prefix`):
//   roc_curves(run_id, artifact_path, point, fpr, tpr, threshold)
//   calibration_curves(run_id, artifact_path, bin, bin_lower, bin_upper, mean_predicted, observed, count)
//   curve_metrics(run_id, artifact_path, n, n_positive, auroc, brier, logged_auroc, logged_brier,
//                 auroc_mismatch, brier_mismatch)
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { PREDICTION_EXTENSIONS, readPredictionFile, type Predictions } from '../derived/predictions.js';
import { outputPrefix, requireTables, sqlIdentifier, sqlString } from '../derived/run-attributes.js';
import { brierScore, calibrationBins, rocCurve, trapezoidArea } from '../derived/stats.js';
import { openWarehouseSnapshot, type WarehouseSnapshot } from '../derived/warehouse-snapshot.js';
import { defineExtractor } from '../sdk/index.js';

export const curvesOptions = z.strictObject({
  source: z.enum(['artifacts', 'table']).default('artifacts'),
  /** Artifact path pattern (source 'artifacts'); `*` matches any characters. */
  artifact_path: z.string().min(1).default('*predictions*'),
  /** Warehouse table holding predictions (source 'table'). */
  predictions_table: z
    .string()
    .regex(/^[A-Za-z_][A-Za-z0-9_]*$/)
    .optional(),
  y_true_column: z.string().min(1).default('y_true'),
  y_prob_column: z.string().min(1).default('y_prob'),
  /** Replace this artifact_uri prefix (e.g. the machine that logged the runs) … */
  artifact_uri_rewrite: z.strictObject({ from: z.string().min(1), to: z.string().min(1) }).optional(),
  /** Base directory for relative artifact URIs like ./mlruns/0/<run>/artifacts. Default: the working directory. */
  artifact_base_dir: z.string().optional(),
  n_bins: z.number().int().min(1).max(1000).default(10),
  drop_intermediate: z.boolean().default(true),
  /** latest_metrics keys the run logged its AUROC and Brier under. */
  auroc_metric: z.string().min(1).default('auroc'),
  brier_metric: z.string().min(1).default('brier'),
  /** Absolute difference above which recomputed and logged values mismatch. */
  tolerance: z.number().nonnegative().default(1e-6),
  experiment_ids: z.array(z.string().min(1)).optional(),
  include_deleted: z.boolean().default(false),
  /** Larger prediction files are skipped (guards the memory limit). Default 1 GiB. */
  max_file_bytes: z.number().int().positive().default(1024 ** 3),
  output_prefix: outputPrefix,
  batch_rows: z.number().optional(),
  threads: z.number().optional(),
});
export type CurvesOptions = z.infer<typeof curvesOptions>;

interface WorkItem {
  runId: string;
  artifactPath: string | null;
  artifactUri: string | null;
  loggedAuroc: number | null;
  loggedBrier: number | null;
}

/** `*` wildcards → an anchored regular expression for DuckDB's regexp_full_match. */
function wildcardRegex(pattern: string): string {
  return pattern
    .split('*')
    .map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
    .join('.*');
}

function loggedMetric(alias: string, key: string): string {
  return `LEFT JOIN (SELECT run_id, max_by(CAST(value AS DOUBLE), step) AS value FROM latest_metrics WHERE key = ${sqlString(key)} GROUP BY run_id) ${alias} ON ${alias}.run_id = r.run_id`;
}

async function listWork(snapshot: WarehouseSnapshot, options: CurvesOptions): Promise<WorkItem[]> {
  const filters: string[] = [];
  if (!options.include_deleted) filters.push(`coalesce(r.lifecycle_stage, 'active') <> 'deleted'`);
  if (options.experiment_ids?.length) filters.push(`CAST(r.experiment_id AS VARCHAR) IN (${options.experiment_ids.map(sqlString).join(', ')})`);
  let from: string;
  let artifactColumn: string;
  if (options.source === 'artifacts') {
    await requireTables((name) => snapshot.hasTable(name), ['runs', 'artifacts', 'latest_metrics'], 'the MLflow extraction job');
    from = `artifacts a JOIN runs r ON r.run_id = a.run_id`;
    artifactColumn = 'a.path';
    filters.push(`regexp_full_match(a.path, ${sqlString(wildcardRegex(options.artifact_path))})`);
    filters.push(`(${PREDICTION_EXTENSIONS.map((ext) => `lower(a.path) LIKE ${sqlString(`%${ext}`)}`).join(' OR ')})`);
  } else {
    const table = options.predictions_table;
    if (table === undefined) throw new Error(`options.predictions_table is required when source is 'table'`);
    await requireTables((name) => snapshot.hasTable(name), ['runs', 'latest_metrics', table], `the job that publishes '${table}'`);
    const columns = await snapshot.columns(table);
    for (const needed of ['run_id', options.y_true_column, options.y_prob_column]) {
      if (!columns.includes(needed)) throw new Error(`warehouse table '${table}' has no column '${needed}' (columns: ${columns.join(', ')})`);
    }
    artifactColumn = columns.includes('artifact_path') ? 'p.artifact_path' : 'NULL';
    from = `(SELECT DISTINCT run_id, ${artifactColumn === 'NULL' ? 'NULL' : 'artifact_path'} AS artifact_path FROM ${sqlIdentifier(table)}) p JOIN runs r ON r.run_id = p.run_id`;
    artifactColumn = 'p.artifact_path';
  }
  const rows = await snapshot.all(`
    SELECT r.run_id, ${artifactColumn} AS artifact_path, r.artifact_uri, la.value AS logged_auroc, lb.value AS logged_brier
    FROM ${from}
    ${loggedMetric('la', options.auroc_metric)}
    ${loggedMetric('lb', options.brier_metric)}
    ${filters.length ? `WHERE ${filters.join(' AND ')}` : ''}
    ORDER BY r.run_id, artifact_path`);
  const number = (value: unknown) => (value === null || value === undefined ? null : Number(value));
  return rows.map((row) => ({
    runId: String(row['run_id']),
    artifactPath: row['artifact_path'] === null ? null : String(row['artifact_path']),
    artifactUri: row['artifact_uri'] === null ? null : String(row['artifact_uri']),
    loggedAuroc: number(row['logged_auroc']),
    loggedBrier: number(row['logged_brier']),
  }));
}

/** The local directory of a run's artifacts, or an error saying why it cannot be read. */
export function artifactDirectory(uri: string | null, options: Pick<CurvesOptions, 'artifact_uri_rewrite' | 'artifact_base_dir'>): string {
  if (uri === null || uri === '') throw new Error('the run has no artifact_uri');
  let rewritten = uri;
  const rewrite = options.artifact_uri_rewrite;
  if (rewrite && rewritten.startsWith(rewrite.from)) rewritten = rewrite.to + rewritten.slice(rewrite.from.length);
  if (rewritten.startsWith('file:')) return fileURLToPath(rewritten.startsWith('file://') ? rewritten : `file://${rewritten.slice(5)}`);
  if (/^[A-Za-z][A-Za-z0-9+.-]*:/.test(rewritten)) {
    throw new Error(`artifact_uri ${uri} is not a local path; read its predictions into a warehouse table and use source: 'table'`);
  }
  return path.resolve(options.artifact_base_dir ?? process.cwd(), rewritten);
}

async function loadPredictions(snapshot: WarehouseSnapshot, item: WorkItem, options: CurvesOptions): Promise<Predictions> {
  const columns = { yTrue: options.y_true_column, yProb: options.y_prob_column };
  if (options.source === 'artifacts') {
    const file = path.join(artifactDirectory(item.artifactUri, options), item.artifactPath ?? '');
    if (!existsSync(file)) throw new Error(`artifact file ${file} does not exist (artifact_uri ${item.artifactUri}); set artifact_uri_rewrite if the store moved`);
    return readPredictionFile(snapshot.connection, file, columns, options.max_file_bytes);
  }
  const where = item.artifactPath === null ? 'run_id = $1' : 'run_id = $1 AND artifact_path = $2';
  const reader = await snapshot.connection.runAndReadAll(
    `SELECT CAST(${sqlIdentifier(columns.yTrue)} AS DOUBLE), CAST(${sqlIdentifier(columns.yProb)} AS DOUBLE) FROM ${sqlIdentifier(options.predictions_table!)} WHERE ${where}`,
    item.artifactPath === null ? [item.runId] : [item.runId, item.artifactPath],
  );
  const [yTrue, yProb] = reader.getColumns();
  const toArray = (values: readonly unknown[] | undefined, column: string) => {
    const out = new Float64Array(values?.length ?? 0);
    (values ?? []).forEach((value, index) => {
      if (value === null) throw new Error(`${options.predictions_table}: ${column} is NULL for run ${item.runId}`);
      out[index] = Number(value);
    });
    return out;
  };
  return { yTrue: toArray(yTrue, columns.yTrue), yProb: toArray(yProb, columns.yProb) };
}

const mismatch = (recomputed: number, logged: number | null, tolerance: number) =>
  logged === null || !Number.isFinite(logged) ? null : Math.abs(recomputed - logged) > tolerance;

export default defineExtractor<CurvesOptions>(
  'curves',
  async (ctx) => {
    const options = ctx.options;
    const prefix = options.output_prefix;
    const snapshot = await openWarehouseSnapshot({ warehouse: ctx.warehouse, label: `${ctx.runId}-curves`, onWait: (m) => ctx.log.info(m) });
    try {
      const roc = ctx.table(`${prefix}roc_curves`, {
        run_id: 'VARCHAR',
        artifact_path: 'VARCHAR',
        point: 'BIGINT',
        fpr: 'DOUBLE',
        tpr: 'DOUBLE',
        threshold: 'DOUBLE',
      });
      const calibration = ctx.table(`${prefix}calibration_curves`, {
        run_id: 'VARCHAR',
        artifact_path: 'VARCHAR',
        bin: 'BIGINT',
        bin_lower: 'DOUBLE',
        bin_upper: 'DOUBLE',
        mean_predicted: 'DOUBLE',
        observed: 'DOUBLE',
        count: 'BIGINT',
      });
      const metrics = ctx.table(`${prefix}curve_metrics`, {
        run_id: 'VARCHAR',
        artifact_path: 'VARCHAR',
        n: 'BIGINT',
        n_positive: 'BIGINT',
        auroc: 'DOUBLE',
        brier: 'DOUBLE',
        logged_auroc: 'DOUBLE',
        logged_brier: 'DOUBLE',
        auroc_mismatch: 'BOOLEAN',
        brier_mismatch: 'BOOLEAN',
      });
      const work = await listWork(snapshot, options);
      if (work.length === 0) {
        ctx.log.warn(
          options.source === 'artifacts'
            ? `no artifact matches '${options.artifact_path}' with extension ${PREDICTION_EXTENSIONS.join('/')}; no curves written`
            : `table '${options.predictions_table}' has no predictions of a selected run; no curves written`,
        );
      }
      ctx.expect({ units: work.length });
      let done = 0;
      let mismatches = 0;
      for (const item of work) {
        if (ctx.stopRequested) return;
        const key = `${item.runId}:${item.artifactPath ?? ''}`;
        if (!ctx.isDone(key)) {
          let predictions: Predictions | undefined;
          let curve: ReturnType<typeof rocCurve> | undefined;
          let bins: ReturnType<typeof calibrationBins> | undefined;
          try {
            predictions = await loadPredictions(snapshot, item, options);
            curve = rocCurve(predictions.yTrue, predictions.yProb, options.drop_intermediate);
            bins = calibrationBins(predictions.yTrue, predictions.yProb, options.n_bins);
          } catch (error) {
            ctx.skip(key, error instanceof Error ? error.message : String(error));
          }
          if (predictions && curve && bins) {
            const { yTrue, yProb } = predictions;
            const fullCurve = options.drop_intermediate ? curve : rocCurve(yTrue, yProb, true);
            const auroc = trapezoidArea(fullCurve.fpr, fullCurve.tpr);
            const brier = brierScore(yTrue, yProb);
            const aurocMismatch = mismatch(auroc, item.loggedAuroc, options.tolerance);
            const brierMismatch = mismatch(brier, item.loggedBrier, options.tolerance);
            if (aurocMismatch || brierMismatch) {
              mismatches++;
              ctx.log.warn(
                `run ${item.runId} ${item.artifactPath ?? ''}: recomputed ` +
                  [
                    aurocMismatch ? `AUROC ${auroc} ≠ logged ${options.auroc_metric} ${item.loggedAuroc}` : '',
                    brierMismatch ? `Brier ${brier} ≠ logged ${options.brier_metric} ${item.loggedBrier}` : '',
                  ]
                    .filter(Boolean)
                    .join('; ') +
                  ` (tolerance ${options.tolerance})`,
              );
            }
            const positives = yTrue.reduce((sum, label) => sum + label, 0);
            await ctx.unit(key, async () => {
              curve!.fpr.forEach((fpr, point) => roc.append([item.runId, item.artifactPath, point, fpr, curve!.tpr[point]!, curve!.thresholds[point]!]));
              for (const bin of bins!) {
                calibration.append([item.runId, item.artifactPath, bin.bin, bin.lower, bin.upper, bin.meanPredicted, bin.observed, bin.count]);
              }
              metrics.append([item.runId, item.artifactPath, yTrue.length, positives, auroc, brier, item.loggedAuroc, item.loggedBrier, aurocMismatch, brierMismatch]);
            });
          }
        }
        ctx.progress(++done, work.length, 'runs');
      }
      if (mismatches > 0) ctx.log.warn(`${mismatches} of ${work.length} prediction artifacts disagree with the logged metrics (see curve_metrics)`);
    } finally {
      snapshot.close();
    }
  },
  { optionsSchema: curvesOptions },
);
