// The rank statistics of extractors/derived/stats.ts against the worked example of Demšar (2006),
// "Statistical Comparisons of Classifiers over Multiple Data Sets", JMLR 7:1–30, §3.2.2 and Table 6,
// and the χ²/F survival functions against SciPy (values in test/fixtures/derived/expected.json).
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { projectRoot } from '../supervisor/paths.js';
import {
  averageRanks,
  chiSquareSurvival,
  fSurvival,
  friedmanTest,
  meanRanks,
  nemenyiCriticalDifference,
  nemenyiQ,
  regularizedBeta,
  regularizedGammaQ,
} from '../extractors/derived/stats.js';
import { DEMSAR_METHODS as METHODS, DEMSAR_TABLE_6 } from './helpers/demsar-table6.js';



/** Rounds like the paper prints: `digits` decimals. */
const round = (value: number, digits: number) => Math.round(value * 10 ** digits) / 10 ** digits;

test('Table 6 ranks per data set: ties get average ranks (2.5 in iris, lung cancer, primary tumor; all 2.5 in mushroom)', (t) => {
  const ranks = Object.fromEntries(DEMSAR_TABLE_6.map(([name, row]) => [name, averageRanks(row, 'higher')]));
  // The bracketed ranks printed in Table 6.
  t.deepEqual(ranks['adult (sample)'], [4, 3, 2, 1]);
  t.deepEqual(ranks['iris'], [1, 2.5, 4, 2.5]);
  t.deepEqual(ranks['lung cancer'], [2.5, 2.5, 4, 1]);
  t.deepEqual(ranks['mushroom'], [2.5, 2.5, 2.5, 2.5]);
  t.deepEqual(ranks['primary tumor'], [4, 2.5, 1, 2.5]);
  t.deepEqual(ranks['voting'], [4, 1, 2, 3]);
  t.deepEqual(ranks['wine'], [3, 1, 4, 2]);
  // Lower-is-better reverses the order (an error rate instead of an AUC).
  t.deepEqual(averageRanks([0.2, 0.1, 0.1, 0.3], 'lower'), [3, 1.5, 1.5, 4]);
  t.throws(() => averageRanks([0.5, Number.NaN]), { message: /value #1 is NaN/ });
});

test('Demšar §3.2.2: average ranks 3.143, 2.000, 2.893, 1.964; χ²_F = 9.28; F_F = 3.69', (t) => {
  const ranks = meanRanks(DEMSAR_TABLE_6.map(([, row]) => row), 'higher');
  // "The average ranks ... are 3.143, 2.000, 2.893 and 1.964" (§3.2.2, last row of Table 6).
  t.deepEqual(ranks.map((rank) => round(rank, 3)), [3.143, 2.0, 2.893, 1.964], METHODS.join(', '));
  const result = friedmanTest(ranks, DEMSAR_TABLE_6.length);
  t.is(result.k, 4);
  t.is(result.n, 14);
  t.is(round(result.chi2, 2), 9.28); // χ²_F = 9.28
  t.is(round(result.f, 2), 3.69); // F_F = 3.69
  // "F_F is distributed according to the F distribution with 4−1 = 3 and (4−1)×(14−1) = 39 degrees of freedom."
  t.is(result.dfNumerator, 3);
  t.is(result.dfDenominator, 39);
  // "The critical value of F(3, 39) for α = 0.05 is 2.85": the 0.95 quantile lies in [2.845, 2.855).
  t.true(fSurvival(2.845, 3, 39) > 0.05);
  t.true(fSurvival(2.855, 3, 39) < 0.05);
  // "... so we reject the null-hypothesis": F_F = 3.69 > 2.85.
  t.true(result.fP < 0.05);
});

test('Demšar §3.2.2: Nemenyi CD = 1.25 at α = 0.05 (q = 2.569) and 1.12 at α = 0.10 (q = 2.291)', (t) => {
  t.is(nemenyiQ(4, 0.05), 2.569);
  t.is(nemenyiQ(4, 0.1), 2.291);
  t.is(round(nemenyiCriticalDifference(4, 14, 0.05)!, 2), 1.25);
  t.is(round(nemenyiCriticalDifference(4, 14, 0.1)!, 2), 1.12);
  // Table 5(a) endpoints: k = 2 is the two-tailed normal quantile; k = 10 ends the table.
  t.is(nemenyiQ(2, 0.05), 1.96);
  t.is(nemenyiQ(10, 0.05), 3.164);
  t.is(nemenyiQ(2, 0.1), 1.645);
  t.is(nemenyiQ(10, 0.1), 2.92);
  t.is(nemenyiCriticalDifference(11, 14, 0.05), undefined);
});

test('Friedman edge cases: identical rankings everywhere give χ²_F = N(k−1), an infinite F_F and p = 0', (t) => {
  const table = Array.from({ length: 6 }, () => [0.9, 0.8, 0.7]);
  const result = friedmanTest(meanRanks(table), 6);
  t.is(result.chi2, 12);
  t.is(result.f, Number.POSITIVE_INFINITY);
  t.is(result.fP, 0);
  const allTied = friedmanTest(meanRanks(Array.from({ length: 5 }, () => [1, 1, 1])), 5);
  t.is(allTied.chi2, 0);
  t.is(allTied.chi2P, 1);
  t.is(allTied.fP, 1);
  t.throws(() => meanRanks([[1, 2], [1]]), { message: /data set #1 has 1 values, expected 2/ });
});

interface DistributionReference {
  chi2_sf: { x: number; df: number; sf: number }[];
  f_sf: { f: number; d1: number; d2: number; sf: number }[];
}

test('χ² and F survival functions equal SciPy 1.17 (relative 1e-10)', (t) => {
  const expected = JSON.parse(fs.readFileSync(path.join(projectRoot, 'test/fixtures/derived/expected.json'), 'utf8')) as DistributionReference;
  t.true(expected.chi2_sf.length >= 5 && expected.f_sf.length >= 5);
  for (const { x, df, sf } of expected.chi2_sf) {
    const actual = chiSquareSurvival(x, df);
    t.true(Math.abs(actual - sf) <= 1e-10 * sf, `chi2.sf(${x}, ${df}): ${actual} vs scipy ${sf}`);
  }
  for (const { f, d1, d2, sf } of expected.f_sf) {
    const actual = fSurvival(f, d1, d2);
    t.true(Math.abs(actual - sf) <= 1e-10 * sf, `f.sf(${f}, ${d1}, ${d2}): ${actual} vs scipy ${sf}`);
  }
  // Closed forms: Q(1, x) = e^{−x}; I_x(1, 1) = x; I_x(a, b) = 1 − I_{1−x}(b, a).
  t.true(Math.abs(regularizedGammaQ(1, 3.7) - Math.exp(-3.7)) < 1e-15);
  t.true(Math.abs(regularizedBeta(0.3, 1, 1) - 0.3) < 1e-15);
  t.true(Math.abs(regularizedBeta(0.8, 2.5, 7) - (1 - regularizedBeta(0.2, 7, 2.5))) < 1e-14);
});
