// Every page's state fields (the URL's keys), defaults and bounds. The pages read nothing else.
import type { Schema } from './state';

export const MODEL_ID = 'chars-small';
export const DEFAULT_TEXT = 'Four score and seven';
/** Seed 003's two example tokens (inputs; every number derived from them comes from the engine). */
export const SEED_TOKENS: number[][] = [
  [0.1, 2.3, -1.2],
  [5.0, 5.1, 4.9],
];
/** Tokens of our own that "Add a token" appends in turn (inputs, like the seed's). */
export const EXTRA_TOKENS: number[][] = [
  [-0.5, 0.7, 1.9],
  [3.0, -2.0, 0.5],
  [1.0, 1.0, 1.2],
  [-4.0, 0.0, 4.0],
];
/**
 * The LayerNorm page's default batch: the seed's two tokens and the first two of ours. With only two tokens
 * BatchNorm maps each feature to about ±1 whatever the others are; with four, its dependence on the batch shows.
 */
export const DEFAULT_TOKENS: number[][] = [...SEED_TOKENS, ...EXTRA_TOKENS.slice(0, 2)];

const text = { kind: 'str', def: DEFAULT_TEXT, maxLen: 64 } as const;
/** Tracked position; −1 = the last token. */
const pos = { kind: 'int', def: -1, min: -1, max: 511 } as const;
const norm = { kind: 'enum', def: 'layernorm', values: ['layernorm', 'rmsnorm', 'none'] } as const;
const placement = { kind: 'enum', def: 'pre', values: ['pre', 'post'] } as const;
const activation = { kind: 'enum', def: 'gelu_tanh', values: ['relu', 'gelu', 'gelu_tanh'] } as const;

function runConfig(prefix: 'a' | 'b', over: { layers: number; placement: string }): Schema {
  return {
    [`${prefix}_layers`]: { kind: 'int', def: over.layers, min: 1, max: 24 },
    [`${prefix}_norm`]: norm,
    [`${prefix}_place`]: { ...placement, def: over.placement },
    [`${prefix}_res`]: { kind: 'bool', def: true },
    [`${prefix}_alpha`]: { kind: 'num', def: 1, min: 0, max: 2 },
    [`${prefix}_act`]: { ...activation, def: 'gelu' },
    [`${prefix}_warm`]: { kind: 'int', def: 0, min: 0, max: 1000 },
    [`${prefix}_lr`]: { kind: 'num', def: 0.001, min: 1e-5, max: 0.1 },
  };
}

/**
 * The pages in the order of the course (lib/course.ts): the nav's order, each page's "next" link, and the first one
 * is the page a bare URL opens.
 */
export const PAGES = {
  course: {
    /** a built-in model with an alphabet (GET /api/models) */
    model: { kind: 'str', def: MODEL_ID, maxLen: 64 },
    text,
    pos,
    block: { kind: 'int', def: 0, min: 0, max: 127 },
    placement,
    /** the step of the block shown, in the placement's order (0 = the first) */
    step: { kind: 'int', def: 0, min: 0, max: 11 },
  },
  'other-half': {
    comp: { kind: 'enum', def: 'residual', values: ['residual', 'layernorm', 'ffn'] },
    text,
    pos,
    block: { kind: 'int', def: 0, min: 0, max: 127 },
    sub: { kind: 'enum', def: 'attn', values: ['attn', 'ffn'] },
    alpha: { kind: 'num', def: 1, min: 0, max: 2 },
  },
  ffn: {
    text,
    pos,
    layer: { kind: 'int', def: 0, min: 0, max: 127 },
    act: activation,
    dff: { kind: 'int', def: 128, min: 1, max: 4096 },
    /** the seed of fresh FFN weights (a d_ff the model does not have) */
    wseed: { kind: 'int', def: 0, min: 0, max: 1_000_000 },
  },
  layernorm: {
    tab: { kind: 'enum', def: 'mean', values: ['mean', 'centre', 'variance', 'normalise', 'affine'] },
    norm: { kind: 'enum', def: 'layernorm', values: ['layernorm', 'rmsnorm'] },
    x: { kind: 'matrix', def: DEFAULT_TOKENS, maxRows: 8, maxCols: 8, blanks: true },
    row: { kind: 'int', def: 0, min: 0, max: 7 },
    gamma: { kind: 'num', def: 1, min: -3, max: 3 },
    beta: { kind: 'num', def: 0, min: -3, max: 3 },
    eps: { kind: 'num', def: 1e-5, min: 1e-12, max: 1 },
    shift: { kind: 'num', def: 0, min: -10, max: 10 },
  },
  gradflow: {
    layers: { kind: 'int', def: 24, min: 1, max: 100 },
    residual: { kind: 'bool', def: true },
    compare: { kind: 'bool', def: true },
    norm,
    placement,
    metric: { kind: 'enum', def: 'resid', values: ['resid', 'params'] },
    seed: { kind: 'int', def: 0, min: 0, max: 1_000_000 },
  },
  addnorm: {
    placement,
    norm,
    residual: { kind: 'bool', def: true },
    step: { kind: 'int', def: 0, min: 0, max: 1000 },
    text,
    pos,
    block: { kind: 'int', def: 0, min: 0, max: 127 },
    depth: { kind: 'int', def: 12, min: 1, max: 100 },
  },
  train: {
    preset: { kind: 'enum', def: 'prepost', values: ['custom', 'residual', 'layernorm', 'prepost'] },
    steps: { kind: 'int', def: 200, min: 1, max: 2000 },
    dmodel: { kind: 'int', def: 32, min: 8, max: 128 },
    seed: { kind: 'int', def: 0, min: 0, max: 1_000_000 },
    ...runConfig('a', { layers: 12, placement: 'pre' }),
    ...runConfig('b', { layers: 12, placement: 'post' }),
    run_a: { kind: 'int', def: 0, min: 0, max: 2 ** 31 - 1 },
    run_b: { kind: 'int', def: 0, min: 0, max: 2 ** 31 - 1 },
  },
  cheatsheet: {},
} satisfies Record<string, Schema>;

export type PageId = keyof typeof PAGES;

export const PAGE_TITLES: Record<PageId, { title: string; seed: string }> = {
  course: { title: 'Course', seed: 'seeds 003, 001' },
  'other-half': { title: 'The other half', seed: 'seed 000' },
  ffn: { title: 'FFN', seed: 'seed 002' },
  layernorm: { title: 'LayerNorm step by step', seed: 'seeds 004, 003' },
  gradflow: { title: 'Gradient flow', seed: 'seeds 003, 004' },
  addnorm: { title: 'Add & Norm', seed: 'seeds 001, 004' },
  train: { title: 'Train', seed: 'seed 003' },
  cheatsheet: { title: 'Cheat sheet', seed: 'seed 003' },
};

/** The tracked position for a text of `n` tokens: −1 or out of range means the last. */
export function effectivePos(pos: number, n: number): number {
  return pos < 0 || pos >= n ? n - 1 : pos;
}

/**
 * The Other-half page's LayerNorm view: the trace activations it draws (docs/trace.md), the residual stream
 * entering ln1 (`sub` = attn) or ln2 (`sub` = ffn) of `block` and that norm's output. Sent as the block request's
 * `trace` list, so the answer carries these two matrices and no other.
 */
export function lnTraceNames(block: number, sub: 'attn' | 'ffn'): { before: string; after: string } {
  return sub === 'attn'
    ? { before: `blocks.${block}.hook_resid_pre`, after: `blocks.${block}.ln1.hook_out` }
    : { before: `blocks.${block}.hook_resid_mid`, after: `blocks.${block}.ln2.hook_out` };
}
