// Each visual component takes data in and draws it, testable alone: rendered here with svelte/server.
import { describe, expect, it } from 'vitest';
import { render } from 'svelte/server';
import Num from '../../src/components/Num.svelte';
import DivergingBars from '../../src/components/DivergingBars.svelte';
import LineChart from '../../src/components/LineChart.svelte';
import Heatmap from '../../src/components/Heatmap.svelte';
import BlockDiagram from '../../src/components/BlockDiagram.svelte';
import ErrorBanner from '../../src/components/ErrorBanner.svelte';
import CodeView from '../../src/components/CodeView.svelte';
import VectorRows from '../../src/components/VectorRows.svelte';
import { logSeries } from '../../src/lib/chart';
import { interpolateRdBu } from 'd3';

const count = (html: string, re: RegExp) => (html.match(re) ?? []).length;

describe('components, rendered alone', () => {
  it('Num: the formatted value, the raw value, the formula as a tooltip', () => {
    const { body } = render(Num, { props: { value: 1.4445333, formula: 'σ = √σ²', testid: 's' } });
    expect(body).toContain('data-raw="1.4445333"');
    expect(body).toMatch(/>1\.4445<span class="tip" role="tooltip"/);
    expect(body).toContain('σ = √σ²');
    expect(body).toContain('tabindex="0"');
    expect(render(Num, { props: { value: null, formula: 'f' } }).body).toContain('data-raw="null"');
  });

  it('DivergingBars: one bar per value, positive and negative classes', () => {
    const { body } = render(DivergingBars, { props: { title: 'pre', values: [1, -2, 0, 0.5], halfWidth: 2, formula: (i: number) => `v${i}` } });
    expect(count(body, /<rect class="bar/g)).toBe(4);
    expect(count(body, /class="bar pos/g)).toBe(2);
    expect(count(body, /class="bar neg/g)).toBe(1);
    expect(body).toContain('role="slider"');
  });

  it('LineChart: a path per series, log ticks as decades, dropped points said', () => {
    const a = { ...logSeries('a', 'with', [1, 2, 3], [0.1, 0.01, 0.001]), color: 'red' };
    const b = { ...logSeries('b', 'without', [1, 2, 3], [1, 0, 2]), color: 'blue', dashed: true };
    const { body } = render(LineChart, { props: { title: 'g', series: [a, b], log: true, xLabel: 'layer', yLabel: 'g', formula: 'f' } });
    expect(count(body, /<path d="M/g)).toBe(2);
    expect(body).toContain('1e-3');
    expect(body).toContain('(1 point not drawable on a log scale)');
  });

  it('Heatmap: a cell per entry and the tracked row outlined', () => {
    const m = [
      [1, -1],
      [0.5, null],
      [0, 2],
    ];
    const { body } = render(Heatmap, { props: { title: 'h', matrix: m, row: 1, formula: 'x' } });
    expect(count(body, /<rect class="cell"/g)).toBe(6);
    expect(body).toMatch(/class="row-outline"[^>]*y="14\.5"/);
  });

  it('BlockDiagram: the config’s components in data-flow order, the selected one pressed', () => {
    const config = { placement: 'post', norm: 'layernorm', residual: true, residual_alpha: 1, activation: 'relu', n_heads: 2, d_ff: 8, d_model: 4 } as const;
    const { body } = render(BlockDiagram, { props: { config, selected: 2, onselect: () => {} } });
    const order = [...body.matchAll(/data-testid="(node-[^"]+)"/g)].map((m) => m[1]);
    expect(order).toEqual(['node-attention', 'node-residual-1', 'node-ln1', 'node-ffn', 'node-residual-2', 'node-ln2']);
    expect(body).toMatch(/aria-pressed="true"[^>]*aria-label="LayerNorm 1/);
    expect(count(body, /class="skip/g)).toBe(2);
  });

  it('ErrorBanner and CodeView', () => {
    expect(render(ErrorBanner, { props: { message: 'refused' } }).body).toContain('role="alert"');
    expect(render(ErrorBanner, { props: { message: null } }).body).not.toContain('role="alert"');
    const { body } = render(CodeView, { props: { excerpts: [{ name: 'x', file: 'a.cpp', firstLine: 10, lastLine: 11, code: 'int a;\nint b;' }] } });
    expect(body).toContain('a.cpp');
    expect(body).toContain('  10');
    expect(body).toContain('int b;');
  });

  it('VectorRows: a cell per feature and row with its raw value, one colour scale for all rows', () => {
    const rows = [
      { id: 'before', label: 'x — in', values: [2, -2, 0], trace: 'blocks.0.hook_resid_pre' },
      { id: 'after', label: 'h — out', values: [1, null, -0.5], trace: 'blocks.0.ln1.hook_out' },
    ];
    const { body } = render(VectorRows, { props: { title: 't', rows, half: 2, token: 3, testid: 'v' } });
    expect(count(body, /<rect class="vec-cell"/g)).toBe(6);
    expect([...body.matchAll(/data-row="([a-z]+)"/g)].map((m) => m[1])).toEqual(['before', 'after']);
    expect([...body.matchAll(/data-raw="([^"]+)"/g)].map((m) => m[1])).toEqual(['2', '-2', '0', '1', 'null', '-0.5']);
    // one diverging scale for every row: ±half its two ends, 0 its middle, the same value the same colour
    const fills = [...body.matchAll(/<rect class="vec-cell"[^>]*fill="([^"]+)"/g)].map((m) => m[1]);
    expect(fills[0]).toBe(interpolateRdBu(0));
    expect(fills[1]).toBe(interpolateRdBu(1));
    expect(fills[2]).toBe(interpolateRdBu(0.5));
    expect(fills[4]).toBe('#ccc');
    expect(body).toContain('x — in');
    expect(body).toContain('role="slider"');
  });
});
