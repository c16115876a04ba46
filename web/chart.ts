// Small SVG charts drawn by hand: a time-series chart with two y axes, limit lines and event markers
// (the Run view), and a duration/outcome dot chart per job (the History view).
import { s } from './dom.js';

export interface Series {
  name: string;
  /** A CSS class giving the stroke colour (see style.css .series-*). */
  className: string;
  points: Array<[x: number, y: number]>;
  /** `right2`: the optional second right-hand axis (see TimeChartSpec.right2). */
  axis: 'left' | 'right' | 'right2';
}

/** A second right-hand axis with a fixed range 0..max, labelled outside the first one (e.g. progress 0..total). */
export interface ExtraAxis {
  max: number;
  format: (value: number) => string;
  /** Written above the axis labels (e.g. the progress unit). */
  title: string;
}

export interface LimitLine {
  value: number;
  axis: 'left' | 'right';
  label: string;
  className: string;
}

export interface Marker {
  at: number;
  label: string;
  className: string;
}

export interface TimeChartSpec {
  width: number;
  height: number;
  series: Series[];
  limits: LimitLine[];
  markers: Marker[];
  formatLeft: (value: number) => string;
  formatRight: (value: number) => string;
  formatX: (value: number) => string;
  /** The right axis never goes below this top value (e.g. 100 for percentages). */
  rightMin?: number;
  /** Series on axis `right2` are scaled to this axis; without it they are not drawn. */
  right2?: ExtraAxis;
}

const basePad = { top: 26, right: 56, bottom: 26, left: 70 };
/** Room for the labels of the second right-hand axis. */
const right2Width = 64;

function niceTop(value: number): number {
  if (value <= 0) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (step * magnitude >= value) return step * magnitude;
  return 10 * magnitude;
}

/** A line chart over time; limits are dashed horizontal lines, markers vertical lines with a label. */
export function timeChart(spec: TimeChartSpec): SVGSVGElement {
  const { width, height } = spec;
  const right2 = spec.right2 && spec.right2.max > 0 ? spec.right2 : null;
  const pad = { ...basePad, right: basePad.right + (right2 ? right2Width : 0) };
  const series = spec.series.filter((one) => one.axis !== 'right2' || right2);
  const innerW = width - pad.left - pad.right;
  const innerH = height - pad.top - pad.bottom;
  const xs = [...series.flatMap((one) => one.points.map((p) => p[0])), ...spec.markers.map((m) => m.at)];
  const xMin = xs.length ? Math.min(...xs) : 0;
  const xMax = xs.length ? Math.max(...xs) : 1;
  const xSpan = xMax - xMin || 1;
  const top = (axis: 'left' | 'right') => {
    const values = [...series.filter((one) => one.axis === axis).flatMap((one) => one.points.map((p) => p[1])), ...spec.limits.filter((l) => l.axis === axis).map((l) => l.value)];
    const max = Math.max(axis === 'right' ? spec.rightMin ?? 0 : 0, ...values);
    return niceTop(max * (axis === 'left' ? 1.08 : 1));
  };
  const leftTop = top('left');
  const rightTop = top('right');
  const x = (value: number) => pad.left + ((value - xMin) / xSpan) * innerW;
  const axisTop = { left: leftTop, right: rightTop, right2: right2?.max ?? 1 };
  const y = (value: number, axis: Series['axis']) => pad.top + innerH - (value / axisTop[axis]) * innerH;

  const svg = s('svg', { class: 'chart', viewBox: `0 0 ${width} ${height}`, width, height, role: 'img' });
  const grid = s('g', { class: 'grid' });
  for (let i = 0; i <= 4; i += 1) {
    const fraction = i / 4;
    const yy = pad.top + innerH - fraction * innerH;
    grid.append(s('line', { x1: pad.left, x2: pad.left + innerW, y1: yy, y2: yy }));
    grid.append(s('text', { x: pad.left - 6, y: yy + 4, class: 'axis-label left' }, spec.formatLeft(leftTop * fraction)));
    grid.append(s('text', { x: pad.left + innerW + 6, y: yy + 4, class: 'axis-label right' }, spec.formatRight(rightTop * fraction)));
    if (right2) grid.append(s('text', { x: pad.left + innerW + basePad.right + 6, y: yy + 4, class: 'axis-label right2' }, right2.format(right2.max * fraction)));
  }
  if (right2) grid.append(s('text', { x: pad.left + innerW + basePad.right + 6, y: pad.top - 10, class: 'axis-label right2 axis-title' }, right2.title));
  for (let i = 0; i <= 4; i += 1) {
    const value = xMin + (xSpan * i) / 4;
    grid.append(s('text', { x: x(value), y: height - 6, class: 'axis-label x' }, spec.formatX(value)));
  }
  svg.append(grid);

  for (const one of series) {
    if (one.points.length === 0) continue;
    const d = one.points.map((p, i) => `${i === 0 ? 'M' : 'L'}${x(p[0]).toFixed(1)},${y(p[1], one.axis).toFixed(1)}`).join(' ');
    svg.append(s('path', { d, class: `series ${one.className}`, 'data-series': one.name }));
  }
  for (const limit of spec.limits) {
    const yy = y(limit.value, limit.axis);
    const group = s('g', { class: `limit ${limit.className}`, 'data-limit': limit.label });
    group.append(s('line', { x1: pad.left, x2: pad.left + innerW, y1: yy, y2: yy }));
    group.append(s('text', { x: pad.left + 4, y: yy - 4 }, limit.label));
    svg.append(group);
  }
  for (const marker of spec.markers) {
    const xx = x(marker.at);
    const group = s('g', { class: `marker ${marker.className}`, 'data-marker': marker.label });
    group.append(s('line', { x1: xx, x2: xx, y1: pad.top - 4, y2: pad.top + innerH }));
    group.append(s('path', { d: `M${xx - 5},${pad.top - 10} L${xx + 5},${pad.top - 10} L${xx},${pad.top - 3} Z` }));
    const anchor = xx > pad.left + innerW * 0.6 ? 'end' : 'start';
    group.append(s('text', { x: xx + (anchor === 'end' ? -8 : 8), y: pad.top - 8, 'text-anchor': anchor }, marker.label));
    svg.append(group);
  }
  svg.append(s('rect', { x: pad.left, y: pad.top, width: innerW, height: innerH, class: 'frame' }));
  return svg;
}

export interface OutcomeDot {
  at: number;
  durationMs: number;
  state: string;
  title: string;
  onClick: () => void;
}

/** Run durations over time, one dot per run, coloured by outcome. */
export function outcomeChart(dots: OutcomeDot[], width = 360, height = 90, formatY: (ms: number) => string = String): SVGSVGElement {
  const p = { top: 8, right: 8, bottom: 8, left: 48 };
  const innerW = width - p.left - p.right;
  const innerH = height - p.top - p.bottom;
  const svg = s('svg', { class: 'chart outcome-chart', viewBox: `0 0 ${width} ${height}`, width, height, role: 'img' });
  const xMin = Math.min(...dots.map((d) => d.at));
  const xMax = Math.max(...dots.map((d) => d.at));
  const yTop = niceTop(Math.max(1, ...dots.map((d) => d.durationMs)));
  svg.append(s('rect', { x: p.left, y: p.top, width: innerW, height: innerH, class: 'frame' }));
  svg.append(s('text', { x: p.left - 4, y: p.top + 9, class: 'axis-label left' }, formatY(yTop)));
  svg.append(s('text', { x: p.left - 4, y: p.top + innerH, class: 'axis-label left' }, '0'));
  for (const dot of dots) {
    const cx = p.left + (xMax === xMin ? innerW / 2 : ((dot.at - xMin) / (xMax - xMin)) * innerW);
    const cy = p.top + innerH - (dot.durationMs / yTop) * innerH;
    const circle = s('circle', { cx: cx.toFixed(1), cy: cy.toFixed(1), r: 4, class: `dot state-${dot.state}`, onclick: dot.onClick }, s('title', {}, dot.title));
    svg.append(circle);
  }
  return svg;
}
