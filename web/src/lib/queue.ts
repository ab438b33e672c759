// The training queue in words (the Train page): a queued run's place ("3rd in the queue"), the queue around
// it, a run its worker gave back, the answer to a cancel, a refused submission. Pure: run-stream.svelte.ts and
// queue.svelte.ts hold the state, Train.svelte shows these lines.
import { ApiRefusal, describeError, type CancelAnswer, type QueueSummary } from './api';

/** 1st, 2nd, 3rd, 4th … 11th, 12th, 13th … 21st, 22nd, 23rd … 101st, 111th, 112th. */
export function ordinal(n: number): string {
  const i = Math.trunc(n);
  const mod100 = Math.abs(i) % 100;
  const mod10 = Math.abs(i) % 10;
  const suffix = mod100 >= 11 && mod100 <= 13 ? 'th' : mod10 === 1 ? 'st' : mod10 === 2 ? 'nd' : mod10 === 3 ? 'rd' : 'th';
  return `${i}${suffix}`;
}

const count = (n: number, one: string, many: string) => `${n} ${n === 1 ? one : many}`;

/** "7 jobs waiting, 2 training on 2 workers" (no live worker: "… no worker is up to train them"). */
export function queueSummaryWords(q: QueueSummary): string {
  const waiting = `${count(q.queued, 'job', 'jobs')} waiting`;
  if (q.workers <= 0) return `${waiting}, no worker is up to train ${q.queued === 1 ? 'it' : 'them'}`;
  return `${waiting}, ${q.running} training on ${count(q.workers, 'worker', 'workers')}`;
}

/**
 * A queued run's line: "Waiting: 3rd in the queue — 7 jobs waiting, 2 training on 2 workers". The place is
 * null until a poll of GET /api/runs has found the run; the queue, until the first poll answered.
 */
export function queueWords(position: number | null | undefined, queue: QueueSummary | null): string {
  const place = position && position > 0 ? `${ordinal(position)} in the queue${position === 1 ? ' (next to start)' : ''}` : 'in the queue';
  return `Waiting: ${place}${queue ? ` — ${queueSummaryWords(queue)}` : ''}`;
}

/**
 * What the page announces to screen readers (aria-live=polite): the place only, so that the line changes — and
 * is read — only when the place does, not at every poll.
 */
export function placeAnnouncement(label: string, position: number | null | undefined): string {
  if (!position || position < 1) return `${label} is waiting in the queue.`;
  return `${label} is ${position === 1 ? 'next' : ordinal(position)} in the queue.`;
}

/**
 * A run whose worker stopped or died went back to the queue: it resumes from its last checkpoint, `step` (GET
 * /api/runs/{id}'s `checkpoint.step`: 0 = none yet, it starts over), or null when that is not known.
 */
export function requeuedWords(step: number | null | undefined): string {
  const from = step === null || step === undefined ? 'from its last checkpoint' : step > 0 ? `from step ${step}` : 'from the start (it had no checkpoint yet)';
  return `Its worker stopped; back in the queue, it will resume ${from}`;
}

/** A run a worker started again ("attempt 2 on worker w, resumed from step 1442"); null for a first start from 0. */
export function resumedWords(attempt: number | null | undefined, fromStep: number | null | undefined): string | null {
  if (!fromStep || fromStep <= 0) return attempt && attempt > 1 ? `Started again (attempt ${attempt})` : null;
  return `Resumed from step ${fromStep}${attempt && attempt > 1 ? ` (attempt ${attempt})` : ''}`;
}

/** DELETE /api/runs/{id}'s answer in words: a queued run is gone at once, a running one stops after its step. */
export function cancelWords(a: CancelAnswer | null): string {
  if (a?.status === 'cancelled') return 'Cancelled';
  if (a?.status === 'cancelling') return 'Stopping after this step…';
  return a?.status ? `Nothing to cancel: the run has already ${a.status === 'finished' ? 'finished' : `ended (${a.status})`}` : 'Cancelled';
}

/** A refused POST /api/runs in words: the queue's two 429s said plainly, anything else as describeError. */
export function submitErrorWords(e: unknown): string {
  if (e instanceof ApiRefusal && e.status === 429) {
    const wait = e.retryAfter ? ` in ${e.retryAfter} s` : ' when one has finished';
    if (e.code === 'too_many_jobs')
      return `You already have as many training jobs queued or running as you may — cancel one, or try again${wait}. (${e.message})`;
    if (e.code === 'queue_full') return `The training queue is full — try again${e.retryAfter ? wait : ' in a little while'}. (${e.message})`;
  }
  return describeError(e);
}
