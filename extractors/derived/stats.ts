// Pure statistics behind the derived extractors: rank statistics for critical-difference diagrams
// (Demšar 2006, "Statistical Comparisons of Classifiers over Multiple Data Sets", JMLR 7:1–30) and
// binary-classifier curves with scikit-learn's semantics. No I/O here, so every number is unit-tested.

// ---------------------------------------------------------------------------------------------
// Ranks and rank tests
// ---------------------------------------------------------------------------------------------

export type Direction = 'higher' | 'lower';

/**
 * Ranks of `values` (1 = best) with tied values sharing the average of the ranks they span, as in
 * Demšar (2006) §3.2.2 ("in case of ties, average ranks are assigned"). Why: CD diagrams need them.
 * Non-finite values are rejected: a NaN has no place in an ordering.
 */
export function averageRanks(values: readonly number[], direction: Direction = 'higher'): number[] {
  values.forEach((value, index) => {
    if (!Number.isFinite(value)) throw new Error(`averageRanks: value #${index} is ${value}; only finite numbers can be ranked`);
  });
  const order = values.map((_, index) => index);
  order.sort((a, b) => (direction === 'higher' ? values[b]! - values[a]! : values[a]! - values[b]!));
  const ranks = new Array<number>(values.length);
  let start = 0;
  while (start < order.length) {
    let end = start;
    while (end + 1 < order.length && values[order[end + 1]!] === values[order[start]!]) end++;
    const shared = (start + 1 + end + 1) / 2; // mean of the 1-based positions start..end
    for (let i = start; i <= end; i++) ranks[order[i]!] = shared;
    start = end + 1;
  }
  return ranks;
}

/**
 * Mean rank per method over complete blocks: `table[dataset][method]` → average rank of each method.
 * Why: the x-axis of a CD diagram and the input of the Friedman test.
 */
export function meanRanks(table: readonly (readonly number[])[], direction: Direction = 'higher'): number[] {
  if (table.length === 0) throw new Error('meanRanks: no data sets');
  const k = table[0]!.length;
  const sums = new Array<number>(k).fill(0);
  table.forEach((row, index) => {
    if (row.length !== k) throw new Error(`meanRanks: data set #${index} has ${row.length} values, expected ${k} (one per method)`);
    averageRanks(row, direction).forEach((rank, method) => (sums[method]! += rank));
  });
  return sums.map((sum) => sum / table.length);
}

export interface FriedmanResult {
  /** Number of methods (k) and data sets (N). */
  k: number;
  n: number;
  chi2: number;
  /** P(χ²_{k−1} ≥ chi2). */
  chi2P: number;
  /** Iman–Davenport F_F = (N−1)χ²_F / (N(k−1) − χ²_F), F-distributed with (k−1, (k−1)(N−1)) d.f. */
  f: number;
  fP: number;
  dfNumerator: number;
  dfDenominator: number;
}

/**
 * Friedman's χ²_F = 12N/(k(k+1)) [Σ R_j² − k(k+1)²/4] and the Iman–Davenport F_F, from mean ranks
 * (Demšar 2006, §3.2.2). No tie correction, exactly as in the paper. Why: the omnibus test that
 * licenses the Nemenyi post-hoc comparison.
 */
export function friedmanTest(meanRanksByMethod: readonly number[], n: number): FriedmanResult {
  const k = meanRanksByMethod.length;
  if (k < 2) throw new Error(`friedmanTest: need at least 2 methods, got ${k}`);
  if (!Number.isInteger(n) || n < 2) throw new Error(`friedmanTest: need at least 2 data sets, got ${n}`);
  const sumSquares = meanRanksByMethod.reduce((sum, rank) => sum + rank * rank, 0);
  const chi2 = Math.max(0, ((12 * n) / (k * (k + 1))) * (sumSquares - (k * (k + 1) * (k + 1)) / 4));
  const dfNumerator = k - 1;
  const dfDenominator = (k - 1) * (n - 1);
  const denominator = n * (k - 1) - chi2;
  // χ²_F reaches N(k−1) only when every data set ranks the methods identically: F_F is then infinite.
  const f = denominator > 0 ? ((n - 1) * chi2) / denominator : Number.POSITIVE_INFINITY;
  return {
    k,
    n,
    chi2,
    chi2P: chiSquareSurvival(chi2, dfNumerator),
    f,
    fP: Number.isFinite(f) ? fSurvival(f, dfNumerator, dfDenominator) : 0,
    dfNumerator,
    dfDenominator,
  };
}

/**
 * Critical values q_α of the two-tailed Nemenyi test: the Studentized range statistic divided by √2,
 * Demšar (2006) Table 5(a), for k = 2..10 methods. Why: CD = q_α·sqrt(k(k+1)/(6N)).
 */
export const NEMENYI_Q: Readonly<Record<'0.05' | '0.10', readonly number[]>> = {
  //        k = 2      3      4      5      6      7      8      9      10
  '0.05': [1.96, 2.343, 2.569, 2.728, 2.85, 2.949, 3.031, 3.102, 3.164],
  '0.10': [1.645, 2.052, 2.291, 2.459, 2.589, 2.693, 2.78, 2.855, 2.92],
};

/** q_α for k methods from Demšar's Table 5(a), or undefined when k is outside 2..10. */
export function nemenyiQ(k: number, alpha: 0.05 | 0.1): number | undefined {
  const row = NEMENYI_Q[alpha === 0.05 ? '0.05' : '0.10'];
  return Number.isInteger(k) && k >= 2 && k <= 10 ? row[k - 2] : undefined;
}

/**
 * Nemenyi critical difference CD = q_α·sqrt(k(k+1)/(6N)) (Demšar 2006, §3.2.2), or undefined when
 * k > 10 (the paper's table ends there). Why: two methods whose mean ranks differ by ≥ CD differ.
 */
export function nemenyiCriticalDifference(k: number, n: number, alpha: 0.05 | 0.1): number | undefined {
  const q = nemenyiQ(k, alpha);
  if (q === undefined || n < 1) return undefined;
  return q * Math.sqrt((k * (k + 1)) / (6 * n));
}

// ---------------------------------------------------------------------------------------------
// Special functions (log-gamma, regularized incomplete gamma and beta)
// ---------------------------------------------------------------------------------------------

const LANCZOS_G = 7;
const LANCZOS_COEFFICIENTS = [
  0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
  12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
];

/** ln Γ(x) for x > 0 (Lanczos, g = 7, n = 9; relative error ≈ 1e-15). Why: the normalizers below. */
export function logGamma(x: number): number {
  if (!(x > 0)) throw new Error(`logGamma: x must be > 0, got ${x}`);
  if (x < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * x)) - logGamma(1 - x); // reflection
  const z = x - 1;
  let sum = LANCZOS_COEFFICIENTS[0]!;
  for (let i = 1; i < LANCZOS_G + 2; i++) sum += LANCZOS_COEFFICIENTS[i]! / (z + i);
  const t = z + LANCZOS_G + 0.5;
  return 0.5 * Math.log(2 * Math.PI) + (z + 0.5) * Math.log(t) - t + Math.log(sum);
}

const EPSILON = 1e-16;
const TINY = 1e-300;
const MAX_ITERATIONS = 10_000;

/**
 * Regularized upper incomplete gamma Q(a, x) = Γ(a, x)/Γ(a): the series for P when x < a + 1, the
 * continued fraction (modified Lentz) for Q otherwise, so each converges fast and Q keeps full
 * relative precision in the far tail. Why: the χ² survival function.
 */
export function regularizedGammaQ(a: number, x: number): number {
  if (!(a > 0)) throw new Error(`regularizedGammaQ: a must be > 0, got ${a}`);
  if (Number.isNaN(x) || x < 0) throw new Error(`regularizedGammaQ: x must be ≥ 0, got ${x}`);
  if (x === 0) return 1;
  if (x === Number.POSITIVE_INFINITY) return 0;
  const logPrefactor = a * Math.log(x) - x - logGamma(a);
  if (x < a + 1) {
    // P(a, x) = x^a e^{-x} / Γ(a+1) · Σ x^n / ((a+1)…(a+n))
    let term = 1 / a;
    let sum = term;
    for (let n = 1; n < MAX_ITERATIONS; n++) {
      term *= x / (a + n);
      sum += term;
      if (Math.abs(term) < Math.abs(sum) * EPSILON) break;
    }
    return Math.min(1, Math.max(0, 1 - sum * Math.exp(logPrefactor)));
  }
  // Q(a, x) = x^a e^{-x} / Γ(a) · 1/(x+1−a− 1·(1−a)/(x+3−a− 2·(2−a)/(x+5−a− …)))
  let b = x + 1 - a;
  let c = 1 / TINY;
  let d = 1 / b;
  let h = d;
  for (let i = 1; i < MAX_ITERATIONS; i++) {
    const an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (Math.abs(d) < TINY) d = TINY;
    c = b + an / c;
    if (Math.abs(c) < TINY) c = TINY;
    d = 1 / d;
    const delta = d * c;
    h *= delta;
    if (Math.abs(delta - 1) < EPSILON) break;
  }
  return Math.min(1, Math.max(0, Math.exp(logPrefactor) * h));
}

/** P(X ≥ x) for X ~ χ²(df). Why: the Friedman p-value. */
export function chiSquareSurvival(x: number, df: number): number {
  if (!(df > 0)) throw new Error(`chiSquareSurvival: df must be > 0, got ${df}`);
  if (x <= 0) return 1;
  return regularizedGammaQ(df / 2, x / 2);
}

/** Continued fraction of I_x(a, b) (modified Lentz), valid when x < (a+1)/(a+b+2). */
function betaContinuedFraction(x: number, a: number, b: number): number {
  const qab = a + b;
  const qap = a + 1;
  const qam = a - 1;
  let c = 1;
  let d = 1 - (qab * x) / qap;
  if (Math.abs(d) < TINY) d = TINY;
  d = 1 / d;
  let h = d;
  for (let m = 1; m < MAX_ITERATIONS; m++) {
    const m2 = 2 * m;
    let aa = (m * (b - m) * x) / ((qam + m2) * (a + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < TINY) d = TINY;
    c = 1 + aa / c;
    if (Math.abs(c) < TINY) c = TINY;
    d = 1 / d;
    h *= d * c;
    aa = (-(a + m) * (qab + m) * x) / ((a + m2) * (qap + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < TINY) d = TINY;
    c = 1 + aa / c;
    if (Math.abs(c) < TINY) c = TINY;
    d = 1 / d;
    const delta = d * c;
    h *= delta;
    if (Math.abs(delta - 1) < EPSILON) break;
  }
  return h;
}

/**
 * Regularized incomplete beta I_x(a, b), by the continued fraction on whichever of I_x(a, b) and
 * 1 − I_{1−x}(b, a) converges. Why: the F-distribution survival function.
 */
export function regularizedBeta(x: number, a: number, b: number): number {
  if (!(a > 0) || !(b > 0)) throw new Error(`regularizedBeta: a and b must be > 0, got a=${a}, b=${b}`);
  if (Number.isNaN(x) || x < 0 || x > 1) throw new Error(`regularizedBeta: x must be in [0, 1], got ${x}`);
  if (x === 0) return 0;
  if (x === 1) return 1;
  const logFront = logGamma(a + b) - logGamma(a) - logGamma(b) + a * Math.log(x) + b * Math.log1p(-x);
  if (x < (a + 1) / (a + b + 2)) return (Math.exp(logFront) * betaContinuedFraction(x, a, b)) / a;
  return 1 - (Math.exp(logFront) * betaContinuedFraction(1 - x, b, a)) / b;
}

/** P(X ≥ f) for X ~ F(d1, d2) = I_{d2/(d2 + d1·f)}(d2/2, d1/2). Why: the Iman–Davenport p-value. */
export function fSurvival(f: number, d1: number, d2: number): number {
  if (!(d1 > 0) || !(d2 > 0)) throw new Error(`fSurvival: degrees of freedom must be > 0, got ${d1}, ${d2}`);
  if (f <= 0) return 1;
  if (f === Number.POSITIVE_INFINITY) return 0;
  return regularizedBeta(d2 / (d2 + d1 * f), d2 / 2, d1 / 2);
}

// ---------------------------------------------------------------------------------------------
// Binary classifier curves (scikit-learn 1.9 semantics)
// ---------------------------------------------------------------------------------------------

export interface RocCurve {
  fpr: number[];
  tpr: number[];
  /** Decreasing; the first is +Infinity (the point (0, 0)), as in scikit-learn ≥ 1.3. */
  thresholds: number[];
}

function checkBinaryInput(yTrue: ArrayLike<number>, yScore: ArrayLike<number>, what: string): void {
  if (yTrue.length !== yScore.length) throw new Error(`${what}: y_true has ${yTrue.length} values but y_prob has ${yScore.length}`);
  if (yTrue.length === 0) throw new Error(`${what}: no predictions`);
  for (let i = 0; i < yTrue.length; i++) {
    if (yTrue[i] !== 0 && yTrue[i] !== 1) throw new Error(`${what}: y_true[${i}] is ${yTrue[i]}; labels must be 0 or 1`);
    if (!Number.isFinite(yScore[i]!)) throw new Error(`${what}: y_prob[${i}] is ${yScore[i]}; scores must be finite`);
  }
}

/**
 * ROC curve exactly as `sklearn.metrics.roc_curve(y_true, y_score, drop_intermediate=…)` (pos_label 1,
 * no sample weights): one point per distinct score, descending, preceded by (0, 0) at threshold +∞;
 * with `dropIntermediate` (sklearn's default, true) collinear points are removed. Why: curve tables
 * that agree with what the researchers' Python produced. Fails when only one class is present.
 */
export function rocCurve(yTrue: ArrayLike<number>, yScore: ArrayLike<number>, dropIntermediate = true): RocCurve {
  checkBinaryInput(yTrue, yScore, 'rocCurve');
  const n = yTrue.length;
  const order = Array.from({ length: n }, (_, i) => i);
  order.sort((a, b) => yScore[b]! - yScore[a]! || a - b); // stable descending, like argsort(stable=True)
  let fps: number[] = [];
  let tps: number[] = [];
  let thresholds: number[] = [];
  let truePositives = 0;
  for (let i = 0; i < n; i++) {
    truePositives += yTrue[order[i]!]!;
    const last = i === n - 1 || yScore[order[i + 1]!] !== yScore[order[i]!];
    if (last) {
      tps.push(truePositives);
      fps.push(i + 1 - truePositives);
      thresholds.push(yScore[order[i]!]!);
    }
  }
  if (tps[tps.length - 1] === 0) throw new Error('rocCurve: y_true has no positive (1) label; the ROC curve is undefined');
  if (fps[fps.length - 1] === 0) throw new Error('rocCurve: y_true has no negative (0) label; the ROC curve is undefined');
  if (dropIntermediate && fps.length > 2) {
    // keep i when the second difference of fps or tps is non-zero (sklearn: np.diff(x, 2)), plus both ends
    const keep: number[] = [0];
    for (let i = 1; i < fps.length - 1; i++) {
      const fpsBend = fps[i + 1]! - 2 * fps[i]! + fps[i - 1]!;
      const tpsBend = tps[i + 1]! - 2 * tps[i]! + tps[i - 1]!;
      if (fpsBend !== 0 || tpsBend !== 0) keep.push(i);
    }
    keep.push(fps.length - 1);
    fps = keep.map((i) => fps[i]!);
    tps = keep.map((i) => tps[i]!);
    thresholds = keep.map((i) => thresholds[i]!);
  }
  const negatives = fps[fps.length - 1]!;
  const positives = tps[tps.length - 1]!;
  return {
    fpr: [0, ...fps.map((value) => value / negatives)],
    tpr: [0, ...tps.map((value) => value / positives)],
    thresholds: [Number.POSITIVE_INFINITY, ...thresholds],
  };
}

/** Area under a curve by the trapezoidal rule over increasing x (sklearn.metrics.auc). */
export function trapezoidArea(x: readonly number[], y: readonly number[]): number {
  if (x.length !== y.length) throw new Error(`trapezoidArea: ${x.length} x values but ${y.length} y values`);
  let area = 0;
  for (let i = 1; i < x.length; i++) area += ((x[i]! - x[i - 1]!) * (y[i]! + y[i - 1]!)) / 2;
  return area;
}

/** AUROC = trapezoid area under `rocCurve` — equals `sklearn.metrics.roc_auc_score` for binary labels. */
export function rocAuc(yTrue: ArrayLike<number>, yScore: ArrayLike<number>): number {
  const curve = rocCurve(yTrue, yScore, true);
  return trapezoidArea(curve.fpr, curve.tpr);
}

/** Brier score: mean of (y_prob − y_true)², as `sklearn.metrics.brier_score_loss` (pos_label 1). */
export function brierScore(yTrue: ArrayLike<number>, yProb: ArrayLike<number>): number {
  checkBinaryInput(yTrue, yProb, 'brierScore');
  let sum = 0;
  for (let i = 0; i < yTrue.length; i++) {
    const error = yProb[i]! - yTrue[i]!;
    sum += error * error;
  }
  return sum / yTrue.length;
}

export interface CalibrationBin {
  /** 0-based index of the uniform bin; empty bins are omitted (as sklearn does). */
  bin: number;
  lower: number;
  upper: number;
  /** Mean predicted probability in the bin (sklearn's prob_pred). */
  meanPredicted: number;
  /** Fraction of positives in the bin (sklearn's prob_true). */
  observed: number;
  count: number;
}

/**
 * Reliability diagram bins like `sklearn.calibration.calibration_curve(y_true, y_prob, n_bins,
 * strategy='uniform')`: edges linspace(0, 1, n_bins+1); a probability p falls in the first bin whose
 * upper inner edge is ≥ p (np.searchsorted side='left'), i.e. bins are (lower, upper] except the first,
 * [0, upper]. Returns the non-empty bins with their counts. Why: calibration tables for the figures.
 */
export function calibrationBins(yTrue: ArrayLike<number>, yProb: ArrayLike<number>, nBins = 10): CalibrationBin[] {
  checkBinaryInput(yTrue, yProb, 'calibrationBins');
  if (!Number.isInteger(nBins) || nBins < 1) throw new Error(`calibrationBins: n_bins must be a positive integer, got ${nBins}`);
  // np.linspace(0, 1, n+1): step = 1/n, edge_i = i*step, last edge exactly 1
  const step = 1 / nBins;
  const edges = Array.from({ length: nBins + 1 }, (_, i) => (i === nBins ? 1 : i * step));
  const sums = new Array<number>(nBins).fill(0);
  const positives = new Array<number>(nBins).fill(0);
  const counts = new Array<number>(nBins).fill(0);
  for (let i = 0; i < yProb.length; i++) {
    const p = yProb[i]!;
    if (p < 0 || p > 1) throw new Error(`calibrationBins: y_prob[${i}] is ${p}; probabilities must be in [0, 1]`);
    let lo = 0;
    let hi = nBins - 1; // searchsorted over the inner edges edges[1..nBins-1]
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (edges[mid + 1]! < p) lo = mid + 1;
      else hi = mid;
    }
    sums[lo]! += p;
    positives[lo]! += yTrue[i]!;
    counts[lo]!++;
  }
  const bins: CalibrationBin[] = [];
  for (let bin = 0; bin < nBins; bin++) {
    if (counts[bin] === 0) continue;
    bins.push({
      bin,
      lower: edges[bin]!,
      upper: edges[bin + 1]!,
      meanPredicted: sums[bin]! / counts[bin]!,
      observed: positives[bin]! / counts[bin]!,
      count: counts[bin]!,
    });
  }
  return bins;
}
