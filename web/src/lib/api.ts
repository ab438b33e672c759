// The HTTP API (docs/api.md): JSON in and out, every refusal `{"error": {"code", "message", "field"}}`, with
// the wait a 429 (or 503) names in `Retry-After` kept as `retryAfter`. Types are the parts of docs/openapi.json
// the app reads.

export class ApiRefusal extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field: string | null,
    /** whole seconds from the `Retry-After` header (a number of seconds or an HTTP date), or null */
    readonly retryAfter: number | null = null,
  ) {
    super(message);
    this.name = 'ApiRefusal';
  }
}

/**
 * A `Retry-After` value in whole seconds from now: delay-seconds ("42") or an HTTP date, rounded up, never
 * negative; null when absent or unreadable.
 */
export function parseRetryAfter(value: string | null, nowMs = Date.now()): number | null {
  if (value === null) return null;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v);
  if (!/[a-z]/i.test(v)) return null; // "-3", "1.5": not a delay, not a date
  const t = Date.parse(v);
  if (Number.isNaN(t)) return null;
  return Math.max(0, Math.ceil((t - nowMs) / 1000));
}

/** One line for the page: what the engine refused and why (or that the server cannot be reached). */
export function describeError(e: unknown): string {
  if (e instanceof ApiRefusal) {
    const where = e.field ? ` (field “${e.field}”)` : '';
    return `The engine refused the request — ${e.message}${where}. [${e.status} ${e.code}]`;
  }
  if (e instanceof TypeError) return `The server could not be reached (${e.message}). Is blocklab serve running?`;
  return `Something went wrong: ${(e as Error)?.message ?? String(e)}`;
}

/** Turns a non-2xx response into an ApiRefusal, whatever its body. */
export async function refusalOf(res: Response): Promise<ApiRefusal> {
  const text = await res.text().catch(() => '');
  const retryAfter = parseRetryAfter(res.headers.get('Retry-After'));
  try {
    const j = JSON.parse(text);
    if (j && typeof j === 'object' && j.error && typeof j.error.message === 'string')
      return new ApiRefusal(res.status, String(j.error.code ?? 'error'), j.error.message, j.error.field ?? null, retryAfter);
  } catch {
    /* not JSON: fall through */
  }
  return new ApiRefusal(res.status, 'http_' + res.status, text.trim().slice(0, 200) || res.statusText, null, retryAfter);
}

export type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;
let fetchImpl: FetchLike = (input, init) => fetch(input, init);
/** Tests swap the transport. */
export function setFetch(f: FetchLike): void {
  fetchImpl = f;
}

// The session's CSRF token (contract section 5): every request that changes state (anything but GET and HEAD)
// made while signed in carries it as X-CSRF-Token. The auth store (auth.svelte.ts) is the one source of it.
let csrfSource: () => string | null = () => null;
export function setCsrfSource(f: () => string | null): void {
  csrfSource = f;
}

/** The one way the app reaches the API: adds X-CSRF-Token to state changes when signed in. */
export function send(path: string, init: RequestInit = {}): Promise<Response> {
  const method = (init.method ?? 'GET').toUpperCase();
  const token = method === 'GET' || method === 'HEAD' ? null : csrfSource();
  if (!token) return fetchImpl(path, init);
  const headers = new Headers(init.headers);
  headers.set('X-CSRF-Token', token);
  return fetchImpl(path, { ...init, headers });
}

export async function getJson<T>(path: string, signal?: AbortSignal): Promise<T> {
  const res = await send(path, { signal, headers: { Accept: 'application/json' } });
  if (!res.ok) throw await refusalOf(res);
  return (await res.json()) as T;
}

export async function postJson<T>(path: string, body: unknown, signal?: AbortSignal): Promise<T> {
  const res = await send(path, {
    method: 'POST',
    signal,
    headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
    body: JSON.stringify(body),
  });
  if (!res.ok) throw await refusalOf(res);
  return (await res.json()) as T;
}

/** DELETE; the answer's JSON, or null for an empty answer (204). */
export async function deleteJson<T>(path: string): Promise<T> {
  const res = await send(path, { method: 'DELETE', headers: { Accept: 'application/json' } });
  if (!res.ok) throw await refusalOf(res);
  const text = await res.text();
  return (text ? JSON.parse(text) : null) as T;
}

export async function getBytes(path: string, signal?: AbortSignal): Promise<ArrayBuffer> {
  const res = await send(path, { signal });
  if (!res.ok) throw await refusalOf(res);
  return await res.arrayBuffer();
}

// ---- response types (docs/openapi.json) ----------------------------------------------------------

export type Vec = (number | null)[];
export type Mat = Vec[];

export interface ModelConfig {
  d_model: number;
  n_heads: number;
  d_ff: number;
  n_layers: number;
  norm: 'layernorm' | 'rmsnorm' | 'none';
  placement: 'pre' | 'post';
  activation: 'relu' | 'gelu' | 'gelu_tanh';
  residual: boolean;
  residual_alpha: number;
  alpha_learnable: boolean;
  eps: number;
  final_norm: boolean;
  causal: boolean;
  dropout: number;
  vocab_size: number | null;
  max_seq_len: number | null;
  tied_head: boolean;
}

export interface ModelInfo {
  id: string;
  source: 'builtin' | 'upload';
  description: string;
  config: ModelConfig;
  task: string | null;
  alphabet: string | null;
  steps: number;
  n_params: number;
  bytes: number;
}

export interface LayerNormResponse {
  mean: Vec;
  var: Vec;
  std: Vec;
  rstd: Vec;
  centered: Mat;
  normalized: Mat;
  out: Mat;
  gamma: Vec;
  beta: Vec;
  eps: number;
  row: number;
  formula: string;
}

export interface RmsNormResponse {
  mean_square: Vec;
  rms: Vec;
  rstd: Vec;
  normalized: Mat;
  out: Mat;
  gamma: Vec;
  eps: number;
  row: number;
  formula: string;
}

export interface BatchNormResponse {
  mean: Vec;
  var: Vec;
  std: Vec;
  normalized: Mat;
  out: Mat;
  gamma: Vec;
  beta: Vec;
  eps: number;
  row: number;
  formula: string;
}

export interface ResidualResponse {
  x: Mat;
  f: Mat;
  alpha: number;
  residual: boolean;
  out: Mat;
  norms: { x: number; f: number; out: number; cos_x_out: number | null }[];
  increment_source: string | object;
  formula: string;
}

export interface FfnResponse {
  pre: Mat;
  act: Mat;
  out: Mat;
  top_units: { position: number; active_fraction: number; units: { unit: number; pre: number; act: number }[] }[];
  activation: 'relu' | 'gelu' | 'gelu_tanh';
  d_model: number;
  d_ff: number;
  /** "given" (explicit w1, b1, w2, b2), the model's layer, or fresh weights `init: {d_ff, seed}` */
  weights: string | { model: string; layer: number } | { init: { d_ff: number; seed: number } };
  formula: string;
}

export interface TrackerStep {
  block: number;
  component: 'layernorm' | 'attention' | 'residual' | 'ffn';
  name: string;
  before: Vec;
  after: Vec;
  increment?: Vec;
  alpha?: number;
  residual?: boolean;
  mean?: number;
  rstd?: number;
  normalized?: Vec;
  pattern?: Mat;
  hidden?: { pre: Vec; post: Vec };
}

export interface BlockResponse {
  model: string;
  config: ModelConfig;
  track: number;
  tokens?: number[];
  text?: string;
  trace?: Record<string, unknown[]>;
  tracker: TrackerStep[];
  output: Mat;
  logits?: Mat;
  predictions?: { position: number; top: { token: number; prob: number; text?: string }[] }[];
}

export interface GradFlowLayer {
  layer: number;
  grad_norm_params: number | null;
  grad_norm_resid: number | null;
  act_mean: number | null;
  act_std: number | null;
}

export interface GradFlowResponse {
  config: ModelConfig;
  batch: number;
  seq_len: number;
  seed: number;
  loss: number | null;
  layers: GradFlowLayer[];
}

export interface RunSubmitted {
  run_id: number;
  status: 'queued';
  events: string;
}

/** GET /api/runs's `queue`: every job waiting in the shared queue, the ones training, the live workers. */
export interface QueueSummary {
  queued: number;
  running: number;
  workers: number;
}

/** One run as GET /api/runs lists it (no history). */
export interface Run {
  id: number;
  kind: string;
  task: string;
  label: string;
  experiment: string;
  status: string;
  seed: number;
  steps_done: number;
  steps_total: number;
  created_at: string;
  updated_at: string;
  final: { loss: number | null; accuracy: number | null };
  wall_s: number;
  tokens_per_s: number;
  /** the latest checkpoint written (step 0 and path "": none yet); a resumed job continues from it */
  checkpoint: { path: string; step: number };
  error: string;
  /** how many times a worker started it: > 1 means it was resumed after a worker stopped or died */
  attempts: number;
  /** queued runs only: 1 = the next to start, in the queue's fair order (round-robin over accounts) */
  queue_position?: number;
  config: Partial<ModelConfig>;
  options: Record<string, unknown>;
}

/** GET /api/runs (and ?mine=1, signed in: only the account's runs, the same `queue`). */
export interface RunList {
  runs: Run[];
  queue: QueueSummary;
}

/** GET /api/runs/{id}: the run with its history (no `queue_position`: only the list has it). */
export interface RunDetail extends Run {
  history: { step: number; loss: number | null; accuracy: number | null; lr: number | null; grad_norm: number | null; wall_s: number }[];
  layer_grad_norms: unknown[];
}

/** DELETE /api/runs/{id}: a queued run is dropped at once (200 "cancelled"), a running one stops after its step (202 "cancelling"). */
export interface CancelAnswer {
  run_id?: number;
  status: 'cancelled' | 'cancelling' | string;
}

export interface StepEvent {
  step: number;
  steps: number;
  loss: number | null;
  accuracy: number | null;
  lr: number | null;
  grad_norm: number | null;
  tokens_per_s: number | null;
  eta_s: number | null;
  layers?: { layer: number; grad_norm_params: number | null; grad_norm_resid: number | null }[];
}

export interface EndEvent {
  run_id: number;
  status: string;
  steps?: number;
  /** absent when the run never trained (a queued run cancelled) */
  final?: { loss: number | null; accuracy: number | null };
  wall_s?: number | null;
  tokens_per_s?: number | null;
  error?: string;
}

/**
 * A run's `status` event: `queued` first; `running` when a worker starts it (with the worker's id, the attempt,
 * and the step it resumes from); `queued` with `requeued: true` when its worker stopped or died and it went back
 * to the queue (it resumes from its last checkpoint, re-sending the steps after it with the same numbers).
 */
export interface StatusEvent {
  run_id: number;
  status: string;
  worker?: string;
  attempt?: number;
  resumes_from_step?: number;
  requeued?: boolean;
}

/** GET /api/health's `workers`: the processes that train jobs from the shared queue. */
export interface WorkerInfo {
  id: string;
  host: string;
  kind: string;
  pid: number;
  max_jobs: number;
  running: number;
  started_at: string;
  heartbeat_age_s: number;
  live: boolean;
}

export interface Health {
  status: string;
  uptime_s: number;
  /** running: in this process; queued: in the shared queue */
  jobs: { running: number; queued: number };
  workers?: WorkerInfo[];
  models: number;
  connections: { open: number; event_streams: number; busy_handlers: number; queued_requests: number };
}

// ---- accounts and comments (contract section 5) ------------------------------------------------------

export type Role = 'student' | 'teacher';
export interface User {
  name: string;
  role: Role;
}
export interface AuthAnswer {
  user: User;
  csrf_token: string;
  /** GET /api/auth/me only: open | code | closed */
  registration?: 'open' | 'code' | 'closed';
}
/** POST /api/auth/class-codes (teachers; extension) */
export interface ClassCode {
  /** 12 letters and digits in groups of four, typed in any case */
  class_code: string;
  expires_in_s: number;
}
export interface Comment {
  id: number;
  section: string;
  author: string;
  body: string;
  /** the server's sanitized rendering: the only text the app inserts as HTML */
  html: string;
  /** ISO 8601, UTC ("2026-12-01T22:14:12Z") */
  created_at: string;
  hidden: boolean;
}
export interface CommentPage {
  comments: Comment[];
  count: number;
  next_after: number | null;
}
