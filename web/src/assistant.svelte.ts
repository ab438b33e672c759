// The learning assistant's state (the panel "Ask about this page", components/AssistantPanel.svelte): the
// transcript, the question in flight, its streamed answer, the last refusal, and a 429's wait.
//
// A question is POST /api/assistant {question, page, context} with `Accept: text/event-stream` (through
// lib/api.ts's `send`, so a signed-in learner's request carries X-CSRF-Token): `token` events append their text to
// the answer, `done` replaces it with the whole response (the answer, its citations and computed numbers, its
// source), `error` ends it with a refusal. A server that answers with plain JSON is read as one `done`.
// Signed in, the transcript is the server's (GET /api/assistant/history, loaded when the panel opens; "Clear
// conversation" is DELETE); signed out it lives in this tab only (sessionStorage), and nowhere once the tab closes.
import { ApiRefusal, getJson, refusalOf, send, deleteJson } from './lib/api';
import {
  answerTurn,
  ASSISTANT_URL,
  assistantError,
  blankTurn,
  eventRefusal,
  HISTORY_URL,
  historyTurns,
  loadTurns,
  questionProblem,
  readAnswer,
  saveTurns,
  tokenText,
  type Turn,
} from './lib/assistant';
import { isEventStream, readEventStream } from './lib/sse';
import { Countdown } from './countdown.svelte';
import { realTimers, type Timers } from './lib/timers';

export const SESSION_KEY = 'blocklab.assistant.transcript';

/** What `ask` did: answered; failed, the question back for the textarea (nothing of an answer came); failed
 * after part of the answer came (kept, marked); not sent at all (an empty or too long question, a wait). */
export type AskOutcome = 'answered' | 'failed' | 'failed-partial' | 'not-sent';

type SessionStore = Pick<Storage, 'getItem' | 'setItem' | 'removeItem'>;

function tabStorage(): SessionStore | null {
  try {
    return typeof sessionStorage === 'undefined' ? null : sessionStorage;
  } catch {
    return null; // storage disabled: the transcript lasts as long as the page
  }
}

export class AssistantStore {
  open = $state(false);
  turns: Turn[] = $state([]);
  /** a question is in flight (sending is disabled) */
  busy = $state(false);
  /** the last refusal, until the next question is answered */
  error: string | null = $state(null);
  /** signed in: the server's history is loading / failed to load */
  history: 'none' | 'loading' | 'loaded' | 'error' = $state('none');
  /** the wait a 429 named: sending is disabled until it ends */
  readonly wait: Countdown;
  /** the server's words for the wait, while it counts down */
  waitReason: string | null = $state(null);
  /** whose transcript this is: an account name, or null (signed out, this tab's) */
  private user: string | null | undefined = undefined;
  private controller: AbortController | null = null;
  private generation = 0;

  constructor(
    private storage: SessionStore | null = tabStorage(),
    timers: Timers = realTimers,
    now: () => number = () => Date.now(),
  ) {
    this.wait = new Countdown(timers, now);
  }

  get signedIn(): boolean {
    return typeof this.user === 'string';
  }

  /** Whether a question may be sent now. */
  get canSend(): boolean {
    return !this.busy && !this.wait.active;
  }

  /** Who is signed in changed (or is first known): the transcript becomes theirs (the server's history, loaded
   * when the panel is open) or this tab's. The question in flight, if any, is dropped. */
  setUser(name: string | null): void {
    if (name === this.user) return;
    const wasSignedIn = this.signedIn;
    this.user = name;
    this.generation++;
    this.controller?.abort();
    this.controller = null;
    this.busy = false;
    this.error = null;
    this.history = 'none';
    if (name === null) {
      // signed out: what was shown was the account's; this tab starts afresh (or from what it kept itself)
      if (wasSignedIn) this.storage?.removeItem(SESSION_KEY);
      this.turns = loadTurns(this.storage?.getItem(SESSION_KEY) ?? null);
    } else {
      this.storage?.removeItem(SESSION_KEY);
      this.turns = [];
      if (this.open) void this.loadHistory();
    }
  }

  show(): void {
    this.open = true;
    if (this.signedIn && !this.busy) void this.loadHistory();
  }

  hide(): void {
    this.open = false;
  }

  /** Signed in: the server's transcript replaces the one shown. */
  async loadHistory(): Promise<void> {
    if (!this.signedIn) return;
    const gen = this.generation;
    this.history = 'loading';
    try {
      const h = await getJson<unknown>(HISTORY_URL);
      if (gen !== this.generation || this.busy) return;
      this.turns = historyTurns(h);
      this.history = 'loaded';
    } catch (e) {
      if (gen !== this.generation) return;
      this.history = 'error';
      this.error = e instanceof ApiRefusal && e.status === 401 ? 'Your session has ended: sign in again to see your conversation.' : `The conversation could not be loaded: ${assistantError(e)}`;
    }
  }

  /** "Clear conversation": signed in, the server forgets it (DELETE); signed out, this tab does. */
  async clear(): Promise<boolean> {
    if (this.busy) return false;
    try {
      if (this.signedIn) await deleteJson(HISTORY_URL);
      this.turns = [];
      this.storage?.removeItem(SESSION_KEY);
      this.error = null;
      return true;
    } catch (e) {
      this.error = `The conversation could not be cleared: ${assistantError(e)}`;
      return false;
    }
  }

  private save(): void {
    if (this.signedIn) return;
    try {
      this.storage?.setItem(SESSION_KEY, saveTurns(this.turns));
    } catch {
      /* full or disabled: the tab keeps it in memory only */
    }
  }

  /** Asks `question` about `page` (its URL state values as `context`); the answer streams into the transcript. */
  async ask(question: string, page: string, context: Record<string, unknown>): Promise<AskOutcome> {
    const problem = questionProblem(question);
    if (problem) {
      this.error = problem;
      return 'not-sent';
    }
    if (!this.canSend) return 'not-sent';
    const gen = this.generation;
    this.busy = true;
    this.turns.push(blankTurn('user', question.trim(), page), { ...blankTurn('assistant', '', page), streaming: true });
    // the transcript's own (reactive) copy, which the events below write into
    const answer = this.turns[this.turns.length - 1];
    const controller = new AbortController();
    this.controller = controller;
    let done = false;
    const onEvent = (name: string, data: unknown) => {
      if (gen !== this.generation) throw new DOMException('superseded', 'AbortError');
      if (name === 'token') answer.text += tokenText(data);
      else if (name === 'done') {
        Object.assign(answer, answerTurn(readAnswer(data), page));
        done = true;
      } else if (name === 'error') throw eventRefusal(data);
    };
    try {
      const res = await send(ASSISTANT_URL, {
        method: 'POST',
        signal: controller.signal,
        headers: { 'Content-Type': 'application/json', Accept: 'text/event-stream' },
        body: JSON.stringify({ question, page, context }),
      });
      if (!res.ok) throw await refusalOf(res);
      if (isEventStream(res)) await readEventStream(res, onEvent);
      else onEvent('done', await res.json());
      if (!done) throw new Error('the answer stopped before it was complete');
      if (gen !== this.generation) return 'failed';
      this.error = null;
      this.waitReason = null;
      this.save();
      return 'answered';
    } catch (e) {
      if (gen !== this.generation) return 'failed'; // signed in or out meanwhile: that transcript is gone
      if (e instanceof ApiRefusal && e.status === 429 && e.retryAfter) {
        this.waitReason = e.message;
        this.wait.start(e.retryAfter, () => {
          this.waitReason = null;
          this.error = null;
        });
      }
      this.error = assistantError(e);
      answer.streaming = false;
      if (answer.text === '') {
        // nothing of an answer: the question goes back to the textarea, the transcript as it was
        this.turns.splice(this.turns.length - 2, 2);
        return 'failed';
      }
      answer.failed = true;
      this.save();
      return 'failed-partial';
    } finally {
      if (gen === this.generation) {
        this.busy = false;
        this.controller = null;
      }
    }
  }

  /** Stops everything (the app is going away). */
  destroy(): void {
    this.generation++;
    this.controller?.abort();
    this.wait.stop();
  }
}

export const assistant = new AssistantStore();
