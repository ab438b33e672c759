// The learning assistant's model-free parts (POST /api/assistant, GET/DELETE /api/assistant/history): the
// question's limits, the answer read defensively from the server's JSON (or its stream's `done` event), the
// transcript's turns, citations as links inside the app, and what the panel says about refusals and sources.
import { ApiRefusal, describeError } from './api';
import { appTarget } from './applink';
import { codePointLength } from './format';
import { waitWords } from './wait';

export const MAX_QUESTION_CHARS = 2000;
export const ASSISTANT_URL = '/api/assistant';
export const HISTORY_URL = '/api/assistant/history';

export interface Citation {
  /** the section's global id, `layernorm#step-by-step` */
  section: string;
  title: string;
  /** the app state that shows it, `/?page=layernorm&x=0.1,2.3,-1.2#step-by-step` */
  url: string;
}

/** A computed value: a number (null: not finite), or a vector of them (a LayerNorm output), or a matrix. */
export type ComputedValue = number | null | ComputedValue[];

export interface Computed {
  what: string;
  value: ComputedValue;
  formula: string;
  unit?: string;
}

export interface AssistantAnswer {
  status: 'answered' | 'unknown';
  answer: string;
  citations: Citation[];
  computed: Computed[];
  /** "lessons", or the name of the model that wrote the answer */
  source: string;
  elapsed_ms: number | null;
  computation_ms: number | null;
}

export interface HistoryMessage {
  role: 'user' | 'assistant';
  text: string;
  page: string;
  citations: Citation[];
  computed: Computed[];
  created_at: string;
  status?: 'answered' | 'unknown';
  source?: string;
}

/** One entry of the panel's transcript. */
export interface Turn {
  role: 'user' | 'assistant';
  text: string;
  page: string;
  citations: Citation[];
  computed: Computed[];
  status: 'answered' | 'unknown';
  source: string;
  elapsed_ms: number | null;
  computation_ms: number | null;
  /** the answer is still arriving */
  streaming: boolean;
  /** the answer stopped before it was complete (an error after some of it arrived) */
  failed: boolean;
  created_at: string;
}

/** Characters as the server counts them (code points, not UTF-16 units). */
export const questionLength = codePointLength;

/** Why a question cannot be sent, or null. */
export function questionProblem(q: string): string | null {
  if (q.trim() === '') return 'Write a question first.';
  const n = questionLength(q);
  if (n > MAX_QUESTION_CHARS) return `The question is ${n - MAX_QUESTION_CHARS} characters too long (at most ${MAX_QUESTION_CHARS}).`;
  return null;
}

const str = (v: unknown, def = ''): string => (typeof v === 'string' ? v : def);
const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
/** A number, or nested arrays of numbers (at most 3 deep); anything else is null. */
const value = (v: unknown, depth = 0): ComputedValue => (Array.isArray(v) && depth < 3 ? v.map((x) => value(x, depth + 1)) : num(v));

/** A computed value's numbers in order (a vector's entries, a matrix's rows one after the other). */
export function flatValues(v: ComputedValue): (number | null)[] {
  return Array.isArray(v) ? v.flatMap(flatValues) : [v];
}

export function readCitations(v: unknown): Citation[] {
  if (!Array.isArray(v)) return [];
  return v
    .filter((c): c is Record<string, unknown> => !!c && typeof c === 'object')
    .map((c) => ({ section: str(c.section), title: str(c.title, str(c.section)), url: str(c.url) }))
    .filter((c) => c.section !== '' || c.url !== '');
}

export function readComputed(v: unknown): Computed[] {
  if (!Array.isArray(v)) return [];
  return v
    .filter((c): c is Record<string, unknown> => !!c && typeof c === 'object')
    .map((c) => {
      const out: Computed = { what: str(c.what), value: value(c.value), formula: str(c.formula) };
      if (typeof c.unit === 'string' && c.unit !== '') out.unit = c.unit;
      return out;
    });
}

/** The answer in a 200's JSON (or a `done` event's data), every field checked; anything missing takes a safe default. */
export function readAnswer(data: unknown): AssistantAnswer {
  const d = (data && typeof data === 'object' ? data : {}) as Record<string, unknown>;
  return {
    status: d.status === 'unknown' ? 'unknown' : 'answered',
    answer: str(d.answer),
    citations: readCitations(d.citations),
    computed: readComputed(d.computed),
    source: str(d.source),
    elapsed_ms: num(d.elapsed_ms),
    computation_ms: num(d.computation_ms),
  };
}

/** A `token` event's text piece ("" when the data has none). */
export function tokenText(data: unknown): string {
  return data && typeof data === 'object' && typeof (data as { text?: unknown }).text === 'string' ? (data as { text: string }).text : '';
}

/** An `error` event's refusal (`{"error": {code, message, field}}`), as a response's would be. */
export function eventRefusal(data: unknown): ApiRefusal {
  const e = (data && typeof data === 'object' ? (data as { error?: unknown }).error : null) as Record<string, unknown> | null;
  const status = typeof e?.status === 'number' ? e.status : 0;
  return new ApiRefusal(status, str(e?.code, 'error'), str(e?.message, 'the answer stopped with an error'), typeof e?.field === 'string' ? e.field : null);
}

export function blankTurn(role: Turn['role'], text: string, page: string): Turn {
  return { role, text, page, citations: [], computed: [], status: 'answered', source: '', elapsed_ms: null, computation_ms: null, streaming: false, failed: false, created_at: '' };
}

/** The finished answer as a transcript turn. */
export function answerTurn(a: AssistantAnswer, page: string): Turn {
  return { ...blankTurn('assistant', a.answer, page), citations: a.citations, computed: a.computed, status: a.status, source: a.source, elapsed_ms: a.elapsed_ms, computation_ms: a.computation_ms };
}

/** GET /api/assistant/history's messages as the transcript, oldest first as the server sends them. */
export function historyTurns(data: unknown): Turn[] {
  const msgs = data && typeof data === 'object' ? (data as { messages?: unknown }).messages : null;
  if (!Array.isArray(msgs)) return [];
  return msgs.filter(isTurnRecord).map((m) => ({ ...turnFrom(m), created_at: str(m.created_at) }));
}

function isTurnRecord(m: unknown): m is Record<string, unknown> {
  return !!m && typeof m === 'object' && ((m as Turn).role === 'user' || (m as Turn).role === 'assistant');
}

/** The fields a kept turn (the server's history, or this tab's) always has, read defensively. */
function turnFrom(m: Record<string, unknown>): Turn {
  return {
    ...blankTurn(m.role as Turn['role'], str(m.text), str(m.page)),
    citations: readCitations(m.citations),
    computed: readComputed(m.computed),
    status: m.status === 'unknown' ? 'unknown' : 'answered',
    source: str(m.source),
  };
}

/** The transcript as the tab keeps it (anonymous learners: sessionStorage), and read back (anything odd dropped). */
export function saveTurns(turns: readonly Turn[]): string {
  return JSON.stringify({ v: 1, turns: turns.filter((t) => !t.streaming) });
}
export function loadTurns(text: string | null): Turn[] {
  if (!text) return [];
  try {
    const j = JSON.parse(text) as { v?: number; turns?: unknown };
    if (j.v !== 1 || !Array.isArray(j.turns)) return [];
    return j.turns
      .filter(isTurnRecord)
      .map((t) => ({
        ...turnFrom(t),
        elapsed_ms: num(t.elapsed_ms),
        computation_ms: num(t.computation_ms),
        failed: t.failed === true,
        created_at: str(t.created_at),
      }));
  } catch {
    return [];
  }
}

/** Where a citation leads inside the app (its URL, checked: this origin's `/?page=…#section`), or null. */
export function citationHref(c: Citation, origin = 'http://app.invalid'): string | null {
  const t = appTarget(c.url, origin);
  if (!t) return null;
  return `/${t.search}${t.anchor ? '#' + t.anchor : ''}`;
}

/** The small line under an answer: where it came from. */
export function sourceWords(source: string): string {
  if (source === '' ) return '';
  return source === 'lessons' ? 'from the lessons' : `from ${source}`;
}

/** How long it took, for that line: "12 ms", "1.4 s". */
export function elapsedWords(ms: number | null): string {
  if (ms === null || ms < 0) return '';
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** A refusal said in the panel (a 429's wait is said by the countdown: `waitMessage`). */
export function assistantError(e: unknown): string {
  if (e instanceof ApiRefusal) {
    const tag = e.status ? ` [${e.status} ${e.code}]` : ` [${e.code}]`;
    switch (e.status) {
      case 400:
        return `The question was refused: ${e.message}.${tag}`;
      case 401:
        return `Your session has ended: sign in again (top right), or ask signed out.${tag}`;
      case 413:
        return `That question is too long for the server: ${e.message}.${tag}`;
      case 429:
        return `Too many questions — ${e.retryAfter ? `try again in ${waitWords(e.retryAfter)}` : 'wait a little before the next one'}. (${e.message})${tag}`;
      case 503:
        return `The assistant is not available right now: ${e.message}.${tag}`;
      default:
        return `The assistant could not answer: ${e.message}.${tag}`;
    }
  }
  if (e instanceof TypeError) return `The server could not be reached (${e.message}).`;
  return describeError(e);
}
