import { h, integer, svg } from './dom.js';
import type { ScoreResult } from './types.js';

const WIDTH = 800;
const HEIGHT = 300;
const MARGIN = { top: 16, right: 24, bottom: 44, left: 60 };

/** A round step (1, 2 or 5 × 10^k) that cuts `span` into about `count` parts. */
function niceStep(span: number, count: number): number {
  const rough = span > 0 ? span / count : 1;
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  return [1, 2, 5, 10].map((f) => f * magnitude).find((step) => step >= rough) ?? rough;
}

/** The multiples of `step` from `low` to `high`. */
function ticks(low: number, high: number, step: number): number[] {
  const values: number[] = [];
  for (let value = Math.ceil(low / step) * step; value <= high + step * 1e-9; value += step) {
    values.push(Number(value.toPrecision(12)));
  }
  return values;
}

/**
 * Perplexity per window across a scored document, as inline SVG: each window is a level segment
 * over the tokens it covers, with a dot (and a tooltip) at its middle; the dashed line is the
 * whole document's perplexity. Where the line rises, the model found the text harder to predict.
 */
export function scoreChart(result: ScoreResult): SVGSVGElement {
  const windows = result.windows;
  const plotWidth = WIDTH - MARGIN.left - MARGIN.right;
  const plotHeight = HEIGHT - MARGIN.top - MARGIN.bottom;
  const values = [...windows.map((window) => window.perplexity), result.perplexity];
  const smallest = Math.min(...values);
  const largest = Math.max(...values);
  // The axis runs between round ticks, with room above the highest point.
  const step = niceStep(largest - smallest, 5);
  const low = Math.max(0, Math.floor(smallest / step) * step);
  const high = Math.ceil((largest + step * 0.1) / step) * step;
  const end = Math.max(1, result.tokens);
  const x = (position: number): number => MARGIN.left + (position / end) * plotWidth;
  const y = (perplexity: number): number =>
    MARGIN.top + plotHeight - ((perplexity - low) / (high - low)) * plotHeight;

  const chart = svg('svg', {
    class: 'score-chart',
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    role: 'img',
    'aria-label': `Perplexity per window of ${windows.length} windows`,
    'data-windows': windows.length,
  });
  for (const value of ticks(low, high, step)) {
    chart.append(
      svg('line', {
        class: 'grid',
        x1: MARGIN.left,
        x2: WIDTH - MARGIN.right,
        y1: y(value),
        y2: y(value),
      }),
      svg(
        'text',
        { class: 'tick', x: MARGIN.left - 8, y: y(value) + 4, 'text-anchor': 'end' },
        String(value),
      ),
    );
  }
  for (const value of ticks(0, end, niceStep(end, 6))) {
    chart.append(
      svg('line', {
        class: 'axis',
        x1: x(value),
        x2: x(value),
        y1: HEIGHT - MARGIN.bottom,
        y2: HEIGHT - MARGIN.bottom + 5,
      }),
      svg(
        'text',
        { class: 'tick', x: x(value), y: HEIGHT - MARGIN.bottom + 18, 'text-anchor': 'middle' },
        integer(value),
      ),
    );
  }
  chart.append(
    svg('line', {
      class: 'axis',
      x1: MARGIN.left,
      x2: WIDTH - MARGIN.right,
      y1: HEIGHT - MARGIN.bottom,
      y2: HEIGHT - MARGIN.bottom,
    }),
    svg('line', {
      class: 'axis',
      x1: MARGIN.left,
      x2: MARGIN.left,
      y1: MARGIN.top,
      y2: HEIGHT - MARGIN.bottom,
    }),
    svg(
      'text',
      { class: 'label', x: MARGIN.left + plotWidth / 2, y: HEIGHT - 6, 'text-anchor': 'middle' },
      'token position',
    ),
    svg(
      'text',
      {
        class: 'label',
        x: 14,
        y: MARGIN.top + plotHeight / 2,
        'text-anchor': 'middle',
        transform: `rotate(-90 14 ${MARGIN.top + plotHeight / 2})`,
      },
      'perplexity',
    ),
    svg('line', {
      class: 'overall',
      x1: MARGIN.left,
      x2: WIDTH - MARGIN.right,
      y1: y(result.perplexity),
      y2: y(result.perplexity),
    }),
  );
  const steps = windows.map(
    (window, i) =>
      `${i === 0 ? 'M' : 'L'}${x(window.start)},${y(window.perplexity)} L${x(window.end)},${y(window.perplexity)}`,
  );
  chart.append(svg('path', { class: 'series', d: steps.join(' ') }));
  for (const window of windows) {
    chart.append(
      svg(
        'circle',
        {
          class: 'point',
          cx: x((window.start + window.end) / 2),
          cy: y(window.perplexity),
          r: windows.length > 80 ? 2 : 3.5,
        },
        svg(
          'title',
          {},
          `tokens ${integer(window.start)}–${integer(window.end)}: perplexity ${window.perplexity.toFixed(3)} (NLL ${window.nll.toFixed(1)} nats)`,
        ),
      ),
    );
  }
  return chart;
}

/** The chart with its caption: the document's figures and what the dashed line is. */
export function scoreFigure(result: ScoreResult): HTMLElement {
  const nats = result.tokens === 0 ? 0 : result.total_nll / result.tokens;
  return h(
    'figure',
    { class: 'score' },
    result.windows.length === 0
      ? h(
          'p',
          { class: 'muted' },
          'This job was scored without windows (window_tokens), so there is no curve to draw.',
        )
      : scoreChart(result),
    h(
      'figcaption',
      {},
      `${integer(result.tokens)} tokens · perplexity ${result.perplexity.toFixed(3)} (dashed) · `,
      `${nats.toFixed(4)} nats/token · total NLL ${result.total_nll.toFixed(1)} nats · `,
      `${result.windows.length} windows`,
    ),
  );
}
