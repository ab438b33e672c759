// A Transformer block as the engine runs it, drawn from the model's config: the components in data-flow
// order (the same names as the API's tracker: ln1, attention, residual 1, ln2, ffn, residual 2) and the
// residual skips, for pre or post placement (docs/architecture.md):
//   pre : mid = r(x, Attn(N1(x)));   out = r(mid, FFN(N2(mid)))
//   post: mid = N1(r(x, Attn(x)));   out = N2(r(mid, FFN(mid)))
// with r(x, f) = x + α·f, or f with the residual off, and N the norm or nothing.

export interface BlockConfigLike {
  placement: 'pre' | 'post';
  norm: 'layernorm' | 'rmsnorm' | 'none';
  residual: boolean;
  residual_alpha: number;
  activation: string;
  n_heads: number;
  d_ff: number;
  d_model: number;
}

export interface DiagramNode {
  /** the tracker's step name */
  id: string;
  kind: 'layernorm' | 'attention' | 'residual' | 'ffn';
  label: string;
  detail: string;
}

export interface DiagramSkip {
  /** the residual node it enters */
  to: number;
  /** the node whose output it carries; −1 = the block's input */
  from: number;
}

export interface Diagram {
  nodes: DiagramNode[];
  /** empty with the residual off: nothing bypasses a sub-layer */
  skips: DiagramSkip[];
}

const NORM_LABEL = { layernorm: 'LayerNorm', rmsnorm: 'RMSNorm', none: '' } as const;

export function blockDiagram(c: BlockConfigLike): Diagram {
  const norm = (i: 1 | 2): DiagramNode | null =>
    c.norm === 'none'
      ? null
      : { id: `ln${i}`, kind: 'layernorm', label: `${NORM_LABEL[c.norm]} ${i}`, detail: `norm${i} over d = ${c.d_model}` };
  const add = (i: 1 | 2): DiagramNode => ({
    id: `residual ${i}`,
    kind: 'residual',
    label: c.residual ? (c.residual_alpha === 1 ? 'Add' : `Add (α = ${c.residual_alpha})`) : 'no residual',
    detail: c.residual ? 'x + α·f' : 'f (the residual is off)',
  });
  const attn: DiagramNode = {
    id: 'attention',
    kind: 'attention',
    label: 'Self-attention',
    detail: `${c.n_heads} heads`,
  };
  const ffn: DiagramNode = {
    id: 'ffn',
    kind: 'ffn',
    label: 'FFN',
    detail: `${c.d_model} → ${c.d_ff} → ${c.d_model}, ${c.activation}`,
  };
  const seq: (DiagramNode | null)[] =
    c.placement === 'pre'
      ? [norm(1), attn, add(1), norm(2), ffn, add(2)]
      : [attn, add(1), norm(1), ffn, add(2), norm(2)];
  const nodes = seq.filter((n): n is DiagramNode => n !== null);
  const skips: DiagramSkip[] = [];
  if (c.residual) {
    nodes.forEach((n, r) => {
      if (n.kind !== 'residual') return;
      let start = r - 1; // the sub-layer
      if (c.placement === 'pre' && start > 0 && nodes[start - 1].kind === 'layernorm') start--; // its pre-norm
      skips.push({ to: r, from: start - 1 });
    });
  }
  return { nodes, skips };
}

/** The placement's equations, in KaTeX, for the config's norm and residual. */
export function placementFormulas(placement: 'pre' | 'post', norm: string, residual: boolean): string[] {
  const N = (i: number, arg: string) => (norm === 'none' ? arg : `\\mathrm{${norm === 'rmsnorm' ? 'RMSNorm' : 'LN'}}_{${i}}(${arg})`);
  const r = (x: string, f: string) => (residual ? `${x} + \\alpha\\,${f}` : f);
  if (placement === 'pre')
    return [
      `\\mathrm{mid} = ${r('x', `\\mathrm{Attn}(${N(1, 'x')})`)}`,
      `\\mathrm{out} = ${r('\\mathrm{mid}', `\\mathrm{FFN}(${N(2, '\\mathrm{mid}')})`)}`,
    ];
  return [
    `\\mathrm{mid} = ${N(1, r('x', '\\mathrm{Attn}(x)'))}`,
    `\\mathrm{out} = ${N(2, r('\\mathrm{mid}', '\\mathrm{FFN}(\\mathrm{mid})'))}`,
  ];
}
