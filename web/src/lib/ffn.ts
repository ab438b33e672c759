// The FFN page's d_ff and where its weights come from (POST /api/compute/ffn takes exactly one source):
// at the model's own width, the model's trained layer (`model`, `layer`); at any other width, fresh weights the
// engine initialises like PyTorch's nn.Linear (`init: {d_ff, seed}`), deterministic per seed.

/** The engine's widest FFN (GET /api/version's limits.max_d_ff). */
export const MAX_DFF = 4096;

/** The multiples of d_model offered for the FFN's width. */
export const DFF_FACTORS = [0.25, 0.5, 1, 2, 4, 8, 16];

/**
 * The d_ff choices: d_model × DFF_FACTORS (whole, 1..MAX_DFF), the model's own d_ff, and `current` when it is
 * none of those (a shared URL may ask for any width), ascending without repeats.
 */
export function dffChoices(modelDff: number, dModel: number, current?: number): number[] {
  const set = new Set<number>([modelDff]);
  for (const f of DFF_FACTORS) {
    const n = dModel * f;
    if (Number.isInteger(n) && n >= 1 && n <= MAX_DFF) set.add(n);
  }
  if (current !== undefined && Number.isInteger(current) && current >= 1 && current <= MAX_DFF) set.add(current);
  return [...set].sort((a, b) => a - b);
}

export type FfnWeightSource = { model: string; layer: number } | { init: { d_ff: number; seed: number } };

/** The weights for width `dff`: the model's trained layer at its own width, fresh initialised ones otherwise. */
export function ffnWeightSource(model: string, modelDff: number, layer: number, dff: number, seed: number): FfnWeightSource {
  return dff === modelDff ? { model, layer } : { init: { d_ff: dff, seed } };
}

/** One line saying which weights an FFN answer was computed with (its `weights` field). */
export function describeWeights(weights: unknown, dff: number): string {
  if (weights && typeof weights === 'object') {
    const w = weights as { model?: string; layer?: number; init?: { d_ff: number; seed: number } };
    if (w.init)
      return `fresh, untrained weights of width d_ff = ${w.init.d_ff}: PyTorch's nn.Linear initialisation (weights and biases uniform in ±1/√fan_in), seed ${w.init.seed}`;
    if (w.model !== undefined) return `${w.model}'s trained FFN of layer ${w.layer ?? 0} (d_ff = ${dff})`;
  }
  return `explicit weights (d_ff = ${dff})`;
}

/** Bar height for a chart of `n` hidden units, so that wide FFNs stay about a screen tall. */
export function barRowHeight(n: number): number {
  return n <= 64 ? 8 : n <= 128 ? 4 : n <= 256 ? 2 : 1;
}

export interface Push {
  feature: number;
  value: number;
}

/**
 * The output features an FFN's increment moves most (largest |out[i]|, ties to the lower index), with their
 * values: what the layer adds to the residual stream, i.e. what it refines. Nulls are skipped.
 */
export function strongestPushes(out: ReadonlyArray<number | null>, k = 3): Push[] {
  return out
    .map((v, feature) => ({ feature, value: v }))
    .filter((p): p is Push => p.value !== null && Number.isFinite(p.value) && p.value !== 0)
    .sort((a, b) => Math.abs(b.value) - Math.abs(a.value) || a.feature - b.feature)
    .slice(0, k);
}
