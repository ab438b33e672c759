// The learning assistant (lib/assistant.ts, assistant.svelte.ts) with a mocked fetch: a streamed answer (tokens,
// then `done` replacing them), a plain-JSON answer, an `error` event, refusals and a 429's wait, the history of a
// signed-in learner, this tab's transcript when signed out, and the panel's words.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ApiRefusal, setCsrfSource, setFetch } from '../../src/lib/api';
import {
  assistantError,
  citationHref,
  elapsedWords,
  flatValues,
  historyTurns,
  loadTurns,
  MAX_QUESTION_CHARS,
  questionLength,
  questionProblem,
  readAnswer,
  saveTurns,
  sourceWords,
} from '../../src/lib/assistant';
import { appTarget } from '../../src/lib/applink';
import { AssistantStore, SESSION_KEY } from '../../src/assistant.svelte';

const ANSWER = {
  status: 'answered',
  answer: 'For $x = [0.1, 2.3, -1.2]$: the mean is **0.4** and σ is 1.4445.',
  citations: [{ section: 'layernorm#step-by-step', title: 'The computation, step by step', url: '/?page=layernorm&x=0.1,2.3,-1.2#step-by-step' }],
  computed: [
    { what: 'mean', value: 0.4, formula: 'μ = (1/d)·Σ xᵢ' },
    { what: 'std', value: 1.4445, formula: 'σ = √((1/d)·Σ (xᵢ − μ)²)', unit: '' },
  ],
  source: 'lessons',
  elapsed_ms: 12.5,
  computation_ms: 0.4,
};

function sse(events: [string, unknown][], split = 7): Response {
  const text = events.map(([e, d]) => `event: ${e}\ndata: ${JSON.stringify(d)}\n\n`).join('');
  const enc = new TextEncoder();
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      for (let i = 0; i < text.length; i += split) c.enqueue(enc.encode(text.slice(i, i + split)));
      c.close();
    },
  });
  return new Response(body, { status: 200, headers: { 'Content-Type': 'text/event-stream' } });
}
const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  new Response(status === 204 ? null : JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json', ...headers } });

class MemoryStorage {
  data = new Map<string, string>();
  getItem(k: string) {
    return this.data.get(k) ?? null;
  }
  setItem(k: string, v: string) {
    this.data.set(k, v);
  }
  removeItem(k: string) {
    this.data.delete(k);
  }
}

let seen: { url: string; method: string; headers: Headers; body: string | null }[] = [];
let reply: (url: string, method: string) => Response | Promise<Response>;
beforeEach(() => {
  seen = [];
  setCsrfSource(() => null);
  setFetch(async (url, init) => {
    const method = init?.method ?? 'GET';
    seen.push({ url, method, headers: new Headers(init?.headers), body: typeof init?.body === 'string' ? init.body : null });
    return reply(url, method);
  });
});
afterEach(() => {
  vi.useRealTimers();
  setCsrfSource(() => null);
});

describe('assistant: the pure parts', () => {
  it('questions: 1–2000 characters as the server counts them (code points)', () => {
    expect(questionProblem('  ')).toBe('Write a question first.');
    expect(questionProblem('x'.repeat(MAX_QUESTION_CHARS))).toBeNull();
    expect(questionProblem('x'.repeat(MAX_QUESTION_CHARS + 3))).toMatch(/3 characters too long/);
    expect(questionLength('σ²😀')).toBe(3);
    expect(questionProblem('😀'.repeat(MAX_QUESTION_CHARS))).toBeNull(); // 4000 UTF-16 units, 2000 characters
  });

  it('reads an answer defensively: wrong types and missing fields take safe defaults', () => {
    expect(readAnswer(ANSWER)).toEqual({ ...ANSWER, computed: [ANSWER.computed[0], { what: 'std', value: 1.4445, formula: ANSWER.computed[1].formula }] });
    expect(readAnswer(null)).toEqual({ status: 'answered', answer: '', citations: [], computed: [], source: '', elapsed_ms: null, computation_ms: null });
    const odd = readAnswer({ status: 'weird', answer: 7, citations: [null, { section: 'ffn#memory' }, 'x'], computed: [{ what: 'm', value: 'NaN', formula: 3 }] });
    expect(odd.status).toBe('answered');
    expect(odd.answer).toBe('');
    expect(odd.citations).toEqual([{ section: 'ffn#memory', title: 'ffn#memory', url: '' }]);
    expect(odd.computed).toEqual([{ what: 'm', value: null, formula: '' }]);
    expect(readAnswer({ status: 'unknown' }).status).toBe('unknown');
    // the server's vectors (a LayerNorm output), and what is not a number in them
    const vec = readAnswer({ computed: [{ what: 'LayerNorm output', value: [-0.20767951, 1.3153037, 'x', [1]], formula: 'f' }] }).computed[0];
    expect(vec.value).toEqual([-0.20767951, 1.3153037, null, [1]]);
    expect(flatValues(vec.value)).toEqual([-0.20767951, 1.3153037, null, 1]);
    expect(flatValues(0.4)).toEqual([0.4]);
  });

  it('citations lead inside the app only: this origin, `/`, a known page, a section id', () => {
    const c = (url: string) => citationHref({ section: 's', title: 't', url }, 'http://127.0.0.1:8080');
    expect(c('/?page=layernorm&x=0.1,2.3,-1.2#step-by-step')).toBe('/?page=layernorm&x=0.1,2.3,-1.2#step-by-step');
    expect(c('?page=ffn')).toBe('/?page=ffn');
    expect(c('http://127.0.0.1:8080/?page=gradflow#depth')).toBe('/?page=gradflow#depth');
    for (const bad of ['https://evil.example/?page=ffn', '//evil.example/?page=ffn', 'javascript:alert(1)', '/?page=nowhere', '/admin?page=ffn', '/?page=ffn#<img>', '/?x=1'])
      expect(c(bad), bad).toBeNull();
    expect(appTarget('/?page=layernorm&tab=variance#epsilon', 'http://h')).toEqual({ page: 'layernorm', search: '?page=layernorm&tab=variance', anchor: 'epsilon' });
  });

  it('the history as a transcript; the tab’s copy round-trips and drops what it cannot read', () => {
    const turns = historyTurns({
      messages: [
        { role: 'user', text: 'q', page: 'ffn', citations: [], computed: [], created_at: '2026-12-02T03:00:00Z' },
        { role: 'assistant', text: 'a', page: 'ffn', citations: ANSWER.citations, computed: ANSWER.computed.slice(0, 1), created_at: '2026-12-02T03:00:01Z' },
        { role: 'system', text: 'dropped' },
      ],
    });
    expect(turns.map((t) => [t.role, t.text, t.page])).toEqual([
      ['user', 'q', 'ffn'],
      ['assistant', 'a', 'ffn'],
    ]);
    expect(turns[1].citations).toEqual(ANSWER.citations);
    expect(historyTurns({})).toEqual([]);
    expect(loadTurns(saveTurns(turns))).toEqual(turns);
    expect(loadTurns('{not json')).toEqual([]);
    expect(loadTurns(JSON.stringify({ v: 2, turns }))).toEqual([]);
  });

  it('says where an answer came from, how long it took, and what a refusal means', () => {
    expect(sourceWords('lessons')).toBe('from the lessons');
    expect(sourceWords('qwen2.5-0.5b-instruct')).toBe('from qwen2.5-0.5b-instruct');
    expect(elapsedWords(12.4)).toBe('12 ms');
    expect(elapsedWords(1430)).toBe('1.4 s');
    expect(assistantError(new ApiRefusal(400, 'bad_request', 'question: expected 1 to 2000 characters', 'question'))).toBe(
      'The question was refused: question: expected 1 to 2000 characters. [400 bad_request]',
    );
    expect(assistantError(new ApiRefusal(413, 'too_large', 'body: at most 8 KiB', null))).toMatch(/^That question is too long/);
    expect(assistantError(new ApiRefusal(503, 'unavailable', 'the model is loading', null))).toMatch(/^The assistant is not available right now: the model is loading/);
    expect(assistantError(new ApiRefusal(429, 'too_many_questions', 'at most 10 a minute', null, 30))).toMatch(/try again in 30 s\. \(at most 10 a minute\)/);
    expect(assistantError(new TypeError('Failed to fetch'))).toMatch(/could not be reached/);
  });
});

describe('assistant: asking', () => {
  it('streams: tokens append, `done` replaces them with the whole answer; the request says page, question and context', async () => {
    const store = new AssistantStore(new MemoryStorage());
    store.setUser(null);
    let during = '';
    reply = () =>
      sse([
        ['token', { text: 'For $x$: ' }],
        ['token', { text: 'the mean is 0.4' }],
        ['done', ANSWER],
      ]);
    const p = store.ask('LayerNorm of [0.1, 2.3, -1.2]?', 'layernorm', { tab: 'mean', x: [[0.1, 2.3, -1.2]] });
    expect(store.busy).toBe(true);
    expect(store.canSend).toBe(false);
    expect(store.turns.map((t) => t.role)).toEqual(['user', 'assistant']);
    expect(store.turns[1].streaming).toBe(true);
    expect(await p).toBe('answered');
    during = store.turns[1].text;
    expect(during).toBe(ANSWER.answer);
    const [a] = store.turns.slice(1);
    expect(a).toMatchObject({ status: 'answered', source: 'lessons', streaming: false, failed: false, elapsed_ms: 12.5 });
    expect(a.computed.map((c) => [c.what, c.value])).toEqual([
      ['mean', 0.4],
      ['std', 1.4445],
    ]);
    expect(store.busy).toBe(false);
    const sent = seen[0];
    expect([sent.url, sent.method, sent.headers.get('Accept'), sent.headers.get('Content-Type')]).toEqual(['/api/assistant', 'POST', 'text/event-stream', 'application/json']);
    expect(JSON.parse(sent.body!)).toEqual({ question: 'LayerNorm of [0.1, 2.3, -1.2]?', page: 'layernorm', context: { tab: 'mean', x: [[0.1, 2.3, -1.2]] } });
    expect(sent.headers.get('X-CSRF-Token')).toBeNull(); // signed out
  });

  it('shows the tokens as they come, before `done`', async () => {
    const store = new AssistantStore(null);
    store.setUser(null);
    let push: ((s: string) => void) | null = null;
    let end: (() => void) | null = null;
    reply = () => {
      const enc = new TextEncoder();
      const body = new ReadableStream<Uint8Array>({
        start(c) {
          push = (s) => c.enqueue(enc.encode(s));
          end = () => c.close();
        },
      });
      return new Response(body, { headers: { 'Content-Type': 'text/event-stream' } });
    };
    const p = store.ask('q', 'ffn', {});
    await vi.waitFor(() => expect(push).not.toBeNull());
    push!('event: token\ndata: {"text":"Hel"}\n\nevent: token\ndata: {"text":"lo"}\n\n');
    await vi.waitFor(() => expect(store.turns[1].text).toBe('Hello'));
    expect(store.turns[1].streaming).toBe(true);
    push!(`event: done\ndata: ${JSON.stringify({ ...ANSWER, answer: 'Hello!' })}\n\n`);
    end!();
    expect(await p).toBe('answered');
    expect(store.turns[1].text).toBe('Hello!');
  });

  it('a plain-JSON 200 is read as the whole answer', async () => {
    const store = new AssistantStore(null);
    store.setUser(null);
    reply = () => json(200, { ...ANSWER, status: 'unknown', citations: [] });
    expect(await store.ask('who won the world cup in 2010?', 'ffn', {})).toBe('answered');
    expect(store.turns[1].status).toBe('unknown');
  });

  it('a refusal: said, the question handed back, the transcript as it was; cleared by the next answer', async () => {
    const store = new AssistantStore(null);
    store.setUser(null);
    reply = () => json(503, { error: { code: 'unavailable', message: 'the assistant is starting', field: null } });
    expect(await store.ask('q', 'ffn', {})).toBe('failed');
    expect(store.turns).toEqual([]);
    expect(store.error).toMatch(/not available right now: the assistant is starting/);
    reply = () => sse([['done', ANSWER]]);
    expect(await store.ask('q', 'ffn', {})).toBe('answered');
    expect(store.error).toBeNull();
  });

  it('an `error` event after some text keeps the text, marked as cut short', async () => {
    const store = new AssistantStore(null);
    store.setUser(null);
    reply = () =>
      sse([
        ['token', { text: 'Part of it' }],
        ['error', { error: { code: 'model_failed', message: 'the model stopped', field: null } }],
      ]);
    expect(await store.ask('q', 'ffn', {})).toBe('failed-partial');
    expect(store.turns[1]).toMatchObject({ text: 'Part of it', failed: true, streaming: false });
    expect(store.error).toMatch(/the model stopped/);
  });

  it('a stream that ends without `done` is an error', async () => {
    const store = new AssistantStore(null);
    store.setUser(null);
    reply = () => sse([['token', { text: 'Half' }]]);
    expect(await store.ask('q', 'ffn', {})).toBe('failed-partial');
    expect(store.error).toMatch(/stopped before it was complete/);
  });

  it('a 429 counts its Retry-After down with sending refused, then allows the next question', async () => {
    vi.useFakeTimers();
    const store = new AssistantStore(null);
    store.setUser(null);
    reply = () => json(429, { error: { code: 'too_many_questions', message: 'at most 10 questions a minute', field: null } }, { 'Retry-After': '3' });
    expect(await store.ask('q', 'ffn', {})).toBe('failed');
    expect(store.wait.left).toBe(3);
    expect(store.waitReason).toBe('at most 10 questions a minute');
    expect(store.canSend).toBe(false);
    expect(await store.ask('again', 'ffn', {})).toBe('not-sent');
    expect(seen).toHaveLength(1);
    vi.advanceTimersByTime(1000);
    expect(store.wait.left).toBe(2);
    vi.advanceTimersByTime(2000);
    expect(store.wait.active).toBe(false);
    expect(store.canSend).toBe(true);
    expect(store.error).toBeNull();
  });

  it('an empty or over-long question is not sent', async () => {
    const store = new AssistantStore(null);
    store.setUser(null);
    reply = () => json(200, ANSWER);
    expect(await store.ask('   ', 'ffn', {})).toBe('not-sent');
    expect(await store.ask('x'.repeat(2001), 'ffn', {})).toBe('not-sent');
    expect(seen).toHaveLength(0);
    expect(store.error).toMatch(/1 characters too long/);
  });
});

describe('assistant: whose transcript', () => {
  it('signed out: kept in this tab (sessionStorage), there again for a new page load', async () => {
    const storage = new MemoryStorage();
    const a = new AssistantStore(storage);
    a.setUser(null);
    reply = () => sse([['done', ANSWER]]);
    await a.ask('q', 'layernorm', {});
    expect(JSON.parse(storage.getItem(SESSION_KEY)!).turns).toHaveLength(2);
    const b = new AssistantStore(storage);
    b.setUser(null);
    expect(b.turns.map((t) => t.text)).toEqual(['q', ANSWER.answer]);
    expect(await b.clear()).toBe(true);
    expect(storage.getItem(SESSION_KEY)).toBeNull();
    expect(seen.filter((s) => s.method === 'DELETE')).toHaveLength(0); // nothing on the server to clear
  });

  it('signed in: the history is loaded on opening, questions carry X-CSRF-Token, Clear is a DELETE; nothing in the tab', async () => {
    const storage = new MemoryStorage();
    storage.setItem(SESSION_KEY, saveTurns(historyTurns({ messages: [{ role: 'user', text: 'anonymous', page: 'ffn' }] })));
    setCsrfSource(() => 'tok-1');
    const store = new AssistantStore(storage);
    reply = (url, method) => {
      if (url === '/api/assistant/history' && method === 'GET') return json(200, { messages: [{ role: 'user', text: 'earlier', page: 'ffn', citations: [], computed: [], created_at: 'x' }] });
      if (url === '/api/assistant/history' && method === 'DELETE') return json(204, null);
      return sse([['done', ANSWER]]);
    };
    store.setUser('ann');
    expect(storage.getItem(SESSION_KEY)).toBeNull();
    expect(store.turns).toEqual([]);
    store.show();
    await vi.waitFor(() => expect(store.history).toBe('loaded'));
    expect(store.turns.map((t) => t.text)).toEqual(['earlier']);
    await store.ask('q', 'ffn', {});
    expect(seen.find((s) => s.url === '/api/assistant')!.headers.get('X-CSRF-Token')).toBe('tok-1');
    expect(storage.getItem(SESSION_KEY)).toBeNull();
    expect(await store.clear()).toBe(true);
    const del = seen.find((s) => s.method === 'DELETE')!;
    expect([del.url, del.headers.get('X-CSRF-Token')]).toEqual(['/api/assistant/history', 'tok-1']);
    expect(store.turns).toEqual([]);
  });

  it('signing out forgets the account’s transcript and drops its question in flight', async () => {
    const store = new AssistantStore(new MemoryStorage());
    store.setUser('ann');
    let aborted = false;
    reply = () =>
      new Promise<Response>((_, reject) => {
        const s = seen.at(-1)!;
        void s;
        setTimeout(() => {
          aborted = true;
          reject(new DOMException('aborted', 'AbortError'));
        }, 5);
      });
    const p = store.ask('q', 'ffn', {});
    store.setUser(null);
    expect(store.turns).toEqual([]);
    expect(store.busy).toBe(false);
    expect(await p).toBe('failed');
    expect(aborted).toBe(true);
    expect(store.turns).toEqual([]);
    expect(store.error).toBeNull();
  });
});
