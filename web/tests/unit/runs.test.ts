import { describe, expect, it } from 'vitest';
import { PAGES } from '../../src/lib/pages';
import { applyPreset, heads, presetOnOpen, PRESETS, runLabel, runRequest, sideConfig } from '../../src/lib/runs';
import { defaults, type Schema, type Values } from '../../src/lib/state';

const v0 = defaults(PAGES.train as Schema);

describe('train page', () => {
  it('the defaults are the pre-vs-post preset', () => {
    expect(v0.preset).toBe('prepost');
    expect(applyPreset(v0, 'prepost')).toEqual({ ...v0, run_a: 0, run_b: 0 });
  });
  it('a link naming a preset and no configuration opens the preset’s configurations; any other URL as written', () => {
    const link: Values = { ...v0, preset: 'residual' };
    const patch = presetOnOpen(link, ['page', 'preset'])!;
    expect(patch).toMatchObject({ a_layers: 8, b_layers: 8, b_res: false, b_place: 'pre' });
    expect({ ...link, ...patch }).toEqual({ ...applyPreset(v0, 'residual'), run_a: link.run_a, run_b: link.run_b });
    // the run ids of a shared link are kept (only configuration fields are set)
    expect(Object.keys(presetOnOpen({ ...link, run_a: 7 }, ['page', 'preset', 'run_a'])!).filter((k) => k.startsWith('run_'))).toEqual([]);
    // only what differs from the state: B's post placement is already the default
    expect(presetOnOpen({ ...v0, preset: 'layernorm' }, ['preset'])).toEqual({ a_layers: 8, b_layers: 8, a_place: 'post', b_norm: 'none' });
    // a shared comparison (any a_/b_ field in the URL), a custom one, and a state that already is the preset's
    expect(presetOnOpen(link, ['page', 'preset', 'b_lr'])).toBeNull();
    expect(presetOnOpen({ ...v0, preset: 'custom' }, ['preset'])).toBeNull();
    expect(presetOnOpen(v0, ['page'])).toBeNull();
    expect(presetOnOpen(applyPreset(v0, 'residual'), ['preset'])).toBeNull();
  });
  it('builds the POST /api/runs body from one side', () => {
    const body = runRequest(v0, 'b');
    expect(body).toEqual({
      task: 'copy',
      steps: 200,
      lr: 0.001,
      warmup: 0,
      seed: 0,
      label: 'web B: 12 layers, post, layernorm',
      grad_norm_every: 10,
      config: { d_model: 32, n_heads: 4, d_ff: 64, n_layers: 12, norm: 'layernorm', placement: 'post', residual: true, residual_alpha: 1, activation: 'gelu' },
    });
  });
  it('every preset changes exactly what its exercise is about', () => {
    const diff = (id: string) => {
      const v = applyPreset(v0, id);
      const a = sideConfig(v, 'a');
      const b = sideConfig(v, 'b');
      return Object.keys(a).filter((k) => a[k as keyof typeof a] !== b[k as keyof typeof b]);
    };
    expect(diff('residual')).toEqual(['res']);
    expect(diff('layernorm')).toEqual(['norm']);
    expect(diff('prepost')).toEqual(['place']);
    expect(sideConfig(applyPreset(v0, 'prepost'), 'a').layers).toBe(12);
    expect(PRESETS).toHaveLength(3);
    expect(applyPreset(v0, 'nope').preset).toBe('custom');
  });
  it('labels and heads', () => {
    expect(runLabel({ layers: 1, norm: 'none', place: 'pre', res: false, alpha: 1, act: 'relu', warm: 50, lr: 0.003 })).toBe(
      '1 layer, pre, no norm, no residual, relu, warm-up 50, lr 0.003',
    );
    expect(heads(32)).toBe(4);
    expect(heads(18)).toBe(2);
    expect(heads(9)).toBe(1);
  });
});
