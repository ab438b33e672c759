// The FFN page's d_ff: the model's FFN has d_ff units; a smaller d_ff keeps the layer's first d_ff hidden
// units (rows of linear1, columns of linear2) and drops the rest — the engine then computes that narrower FFN
// from the explicit weights (POST /api/compute/ffn with w1, b1, w2, b2 in PyTorch's layout).
import { tensor, type SafetensorsFile } from './safetensors';

export interface FfnWeights {
  w1: number[][]; // [d_ff, d_model]
  b1: number[]; // [d_ff]
  w2: number[][]; // [d_model, d_ff]
  b2: number[]; // [d_model]
}

/** The d_ff choices offered for a model's FFN of width `modelDff`: halvings down to d_model / 4. */
export function dffChoices(modelDff: number, dModel: number): number[] {
  const out: number[] = [];
  for (let f = modelDff; f >= Math.max(1, Math.floor(dModel / 4)); f = Math.floor(f / 2)) {
    out.push(f);
    if (f === 1) break;
  }
  return out;
}

/** Layer `layer`'s FFN weights from a model file, keeping the first `keep` hidden units. */
export function ffnWeights(file: SafetensorsFile, layer: number, dModel: number, dFf: number, keep: number): FfnWeights {
  if (!(keep >= 1 && keep <= dFf)) throw new Error(`d_ff: expected 1..${dFf}, got ${keep}`);
  const p = `layers.${layer}.`;
  const w1 = tensor(file, p + 'linear1.weight', [dFf, dModel]).data;
  const b1 = tensor(file, p + 'linear1.bias', [dFf]).data;
  const w2 = tensor(file, p + 'linear2.weight', [dModel, dFf]).data;
  const b2 = tensor(file, p + 'linear2.bias', [dModel]).data;
  return pruneFfn({ w1, b1, w2, b2 }, dModel, dFf, keep);
}

/** Keeps the first `keep` hidden units of row-major W1 [F, d], b1 [F], W2 [d, F], b2 [d]. */
export function pruneFfn(
  w: { w1: ArrayLike<number>; b1: ArrayLike<number>; w2: ArrayLike<number>; b2: ArrayLike<number> },
  d: number,
  F: number,
  keep: number,
): FfnWeights {
  const w1: number[][] = [];
  for (let u = 0; u < keep; u++) w1.push(Array.from({ length: d }, (_, j) => w.w1[u * d + j]));
  const b1 = Array.from({ length: keep }, (_, u) => w.b1[u]);
  const w2: number[][] = [];
  for (let i = 0; i < d; i++) w2.push(Array.from({ length: keep }, (_, u) => w.w2[i * F + u]));
  const b2 = Array.from({ length: d }, (_, i) => w.b2[i]);
  return { w1, b1, w2, b2 };
}
