// The Train page's two configurations → POST /api/runs bodies (the copy task of seed 003), and the presets for
// the seed's exercises. Pure: the page keeps the values in its URL state.
import type { Values } from './state';

export type Side = 'a' | 'b';

export interface RunConfigValues {
  layers: number;
  norm: string;
  place: string;
  res: boolean;
  alpha: number;
  act: string;
  warm: number;
  lr: number;
}

export function sideConfig(v: Values, side: Side): RunConfigValues {
  return {
    layers: v[`${side}_layers`] as number,
    norm: v[`${side}_norm`] as string,
    place: v[`${side}_place`] as string,
    res: v[`${side}_res`] as boolean,
    alpha: v[`${side}_alpha`] as number,
    act: v[`${side}_act`] as string,
    warm: v[`${side}_warm`] as number,
    lr: v[`${side}_lr`] as number,
  };
}

/** The label a run carries in the store and on the chart, e.g. "12 layers, post, layernorm". */
export function runLabel(c: RunConfigValues): string {
  const parts = [`${c.layers} layer${c.layers === 1 ? '' : 's'}`, c.place, c.norm === 'none' ? 'no norm' : c.norm];
  if (!c.res) parts.push('no residual');
  else if (c.alpha !== 1) parts.push(`α ${c.alpha}`);
  if (c.act !== 'gelu') parts.push(c.act);
  if (c.warm > 0) parts.push(`warm-up ${c.warm}`);
  if (c.lr !== 0.001) parts.push(`lr ${c.lr}`);
  return parts.join(', ');
}

export function heads(dModel: number): number {
  for (const h of [4, 2, 1]) if (dModel % h === 0) return h;
  return 1;
}

/** The POST /api/runs body for one side. */
export function runRequest(v: Values, side: Side) {
  const c = sideConfig(v, side);
  const d = v.dmodel as number;
  return {
    task: 'copy',
    steps: v.steps as number,
    lr: c.lr,
    warmup: c.warm,
    seed: v.seed as number,
    label: `web ${side.toUpperCase()}: ${runLabel(c)}`,
    grad_norm_every: 10,
    config: {
      d_model: d,
      n_heads: heads(d),
      d_ff: 2 * d,
      n_layers: c.layers,
      norm: c.norm,
      placement: c.place,
      residual: c.res,
      residual_alpha: c.alpha,
      activation: c.act,
    },
  };
}

export interface Preset {
  id: 'residual' | 'layernorm' | 'prepost';
  title: string;
  exercise: string;
  values: Values;
}

const base = (side: Side, over: Partial<RunConfigValues>): Values => {
  const c: RunConfigValues = { layers: 8, norm: 'layernorm', place: 'pre', res: true, alpha: 1, act: 'gelu', warm: 0, lr: 0.001, ...over };
  return Object.fromEntries(Object.entries(c).map(([k, val]) => [`${side}_${k}`, val]));
};

/** Seed 003's exercises, each as A (the baseline) vs B (the change). */
export const PRESETS: Preset[] = [
  {
    id: 'residual',
    title: 'Ablate residual',
    exercise: 'Remove + x → training fails at depth > 6.',
    values: { ...base('a', { layers: 8 }), ...base('b', { layers: 8, res: false }) },
  },
  {
    id: 'layernorm',
    title: 'Ablate LayerNorm',
    exercise: 'Replace LayerNorm with identity → unstable.',
    values: { ...base('a', { layers: 8, place: 'post' }), ...base('b', { layers: 8, place: 'post', norm: 'none' }) },
  },
  {
    id: 'prepost',
    title: 'Pre vs post at 12 layers',
    exercise: 'Train a 12-layer model in each placement → compare loss curves.',
    values: { ...base('a', { layers: 12 }), ...base('b', { layers: 12, place: 'post' }) },
  },
];

export function applyPreset(v: Values, id: string): Values {
  const p = PRESETS.find((x) => x.id === id);
  return p ? { ...v, ...p.values, preset: id, run_a: 0, run_b: 0 } : { ...v, preset: 'custom' };
}

/**
 * What a URL that names a preset opens: a link with the preset and none of the two configurations' fields (a
 * lesson's or the cheat sheet's, `?page=train&preset=residual`) opens that preset's configurations — the fields
 * to set, or null when the state already is the preset's. A URL with any configuration field (`a_…`, `b_…`: a
 * shared comparison) opens as it is written, and so does one that names no preset (`custom`).
 */
export function presetOnOpen(v: Values, urlKeys: Iterable<string>): Values | null {
  const p = PRESETS.find((x) => x.id === v.preset);
  if (!p) return null;
  for (const k of urlKeys) if (/^[ab]_/.test(k)) return null;
  const patch = Object.fromEntries(Object.entries(p.values).filter(([k, val]) => v[k] !== val));
  return Object.keys(patch).length ? patch : null;
}

export const TERMINAL = new Set(['finished', 'diverged', 'cancelled', 'failed', 'interrupted']);
