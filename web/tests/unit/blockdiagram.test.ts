import { describe, expect, it } from 'vitest';
import { blockDiagram, placementFormulas, type BlockConfigLike } from '../../src/lib/blockdiagram';

const base: BlockConfigLike = { placement: 'pre', norm: 'layernorm', residual: true, residual_alpha: 1, activation: 'gelu_tanh', n_heads: 4, d_ff: 128, d_model: 64 };

describe('block diagram from the config', () => {
  it('pre placement: the tracker’s order, skips around norm + sub-layer', () => {
    const d = blockDiagram(base);
    expect(d.nodes.map((n) => n.id)).toEqual(['ln1', 'attention', 'residual 1', 'ln2', 'ffn', 'residual 2']);
    expect(d.skips).toEqual([
      { to: 2, from: -1 },
      { to: 5, from: 2 },
    ]);
    expect(d.nodes[4].detail).toBe('64 → 128 → 64, gelu_tanh');
  });
  it('post placement: norms after the additions, skips around the sub-layer only', () => {
    const d = blockDiagram({ ...base, placement: 'post' });
    expect(d.nodes.map((n) => n.id)).toEqual(['attention', 'residual 1', 'ln1', 'ffn', 'residual 2', 'ln2']);
    expect(d.skips).toEqual([
      { to: 1, from: -1 },
      { to: 4, from: 2 },
    ]);
  });
  it('no norm, no residual, RMSNorm, α', () => {
    expect(blockDiagram({ ...base, norm: 'none' }).nodes.map((n) => n.id)).toEqual(['attention', 'residual 1', 'ffn', 'residual 2']);
    expect(blockDiagram({ ...base, norm: 'none' }).skips).toEqual([
      { to: 1, from: -1 },
      { to: 3, from: 1 },
    ]);
    expect(blockDiagram({ ...base, residual: false }).skips).toEqual([]);
    expect(blockDiagram({ ...base, norm: 'rmsnorm' }).nodes[0].label).toBe('RMSNorm 1');
    expect(blockDiagram({ ...base, residual_alpha: 0.5 }).nodes[2].label).toBe('Add (α = 0.5)');
  });
  it('the placement formulas', () => {
    expect(placementFormulas('pre', 'layernorm', true)).toEqual([
      '\\mathrm{mid} = x + \\alpha\\,\\mathrm{Attn}(\\mathrm{LN}_{1}(x))',
      '\\mathrm{out} = \\mathrm{mid} + \\alpha\\,\\mathrm{FFN}(\\mathrm{LN}_{2}(\\mathrm{mid}))',
    ]);
    expect(placementFormulas('post', 'none', false)).toEqual(['\\mathrm{mid} = \\mathrm{Attn}(x)', '\\mathrm{out} = \\mathrm{FFN}(\\mathrm{mid})']);
  });
});
