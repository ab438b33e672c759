// One section's comments (contract section 5): the first page oldest first, "load more" pages after it, posting,
// deleting, hiding; and a poll for new ones (GET ?after=<last id>) every `pollMs` while the panel is visible.
// The poll is a chain of timeouts, each armed only after the previous answer came back, so a slow server never
// gets a second poll on top of the first, and none is sent while the panel is off screen or the tab hidden.
//
// What others delete or hide does not show in `?after=` answers, so at a lower rate the chain re-fetches the
// range already loaded (the first page and any "Load more" pages, 100 a request) and reconciles it with the
// list: gone comments are removed, hidden flags and HTML updated, unhidden ones put back, everything else kept
// as it is (the same objects, so nothing else is drawn again). That re-fetch ("resync") runs every
// `resyncEvery` polls, at once when a poll's `count` says the list is out of step (a delete or a hide seen by
// this reader changes the count), and at the first tick after the panel comes back into view.
import { deleteJson, describeError, ApiRefusal, getJson, postJson, type Comment, type CommentPage } from './lib/api';
import { codePointLength } from './lib/format';
import { realTimers, type Timers } from './lib/timers';
import { waitWords } from './lib/wait';
import { Countdown } from './countdown.svelte';

export type { Timers } from './lib/timers';

export const MAX_COMMENT_CHARS = 4000;
export const POLL_MS = 5000;
/** polls between two resyncs (6 × 5 s: the loaded range is fetched again every 30 s at the most) */
export const RESYNC_EVERY = 6;
/** comments per resync request (the server's most) */
export const RESYNC_LIMIT = 100;
/** a resync never asks for more pages than this (5000 comments) */
export const RESYNC_MAX_PAGES = 50;
export const SECTION_RE = /^[a-z0-9][a-z0-9_-]{0,39}#[a-z0-9][a-z0-9_.-]{0,79}$/;

/** Characters as the server counts them (code points, not UTF-16 units). */
export const commentLength = codePointLength;

/** Why a body cannot be posted, or null. */
export function bodyProblem(body: string): string | null {
  if (body.trim() === '') return 'Write something first.';
  const n = commentLength(body);
  if (n > MAX_COMMENT_CHARS) return `${n - MAX_COMMENT_CHARS} characters too long (at most ${MAX_COMMENT_CHARS}).`;
  return null;
}

/** A refusal said for the comments panel: the server's message, with a wait when it gave one. */
export function commentError(e: unknown): string {
  if (e instanceof ApiRefusal) {
    if (e.status === 401) return 'Your session has ended: sign in again (top right) to comment.';
    return `${e.message} [${e.status} ${e.code}]`;
  }
  return describeError(e);
}

export function commentsUrl(section: string, after?: number | null, limit?: number): string {
  const q = new URLSearchParams({ section });
  if (after) q.set('after', String(after));
  if (limit) q.set('limit', String(limit));
  return `/api/comments?${q}`;
}

export interface Reconciled {
  /** the list to show, oldest first */
  comments: Comment[];
  /** ids that the server no longer sends (deleted, or hidden from this reader) */
  removed: number[];
  /** ids whose hidden flag, HTML, body or author changed (the server's version is taken) */
  changed: number[];
  /** ids in the range, not after the newest this reader has seen, that were not shown (unhidden, or missed) */
  added: number[];
  /** ids after the newest this reader has seen: new comments (what a poll would have brought) */
  newer: number[];
}

/**
 * Reconciles the list shown with a fresh copy of the server's comments for ids ≤ `upTo` (everything the
 * re-fetch covered): in that range the server is right, beyond it the list is kept. Comments that did not
 * change stay the same objects; `gone` (ids this reader deleted) never come back, even from an answer sent
 * before the delete. `seen`: the newest id this reader was ever shown (default: the last in `shown`), which
 * tells comments put back (`added`) from new ones (`newer`).
 */
export function reconcile(
  shown: readonly Comment[],
  server: readonly Comment[],
  upTo: number,
  gone: ReadonlySet<number> = new Set(),
  seen?: number,
): Reconciled {
  const fresh = new Map<number, Comment>();
  for (const c of server) if (c.id <= upTo && !gone.has(c.id)) fresh.set(c.id, c);
  const comments: Comment[] = [];
  const removed: number[] = [];
  const changed: number[] = [];
  for (const c of shown) {
    if (c.id > upTo) {
      comments.push(c);
      continue;
    }
    const s = fresh.get(c.id);
    if (!s) {
      removed.push(c.id);
      continue;
    }
    fresh.delete(c.id);
    if (s.hidden !== c.hidden || s.html !== c.html || s.body !== c.body || s.author !== c.author) {
      comments.push(s);
      changed.push(c.id);
    } else comments.push(c);
  }
  let last = seen ?? 0;
  for (const c of shown) last = Math.max(last, c.id);
  const added: number[] = [];
  const newer: number[] = [];
  for (const id of fresh.keys()) (id <= last ? added : newer).push(id);
  if (fresh.size) {
    comments.push(...fresh.values());
    comments.sort((a, b) => a.id - b.id);
  }
  return { comments, removed, changed, added, newer };
}

/** What a resync changed, said once for screen readers (the panel's status line), or null for nothing. */
export function changeNotice(r: Pick<Reconciled, 'removed' | 'changed' | 'added'>): string | null {
  const n = (k: number, one: string, many: string) => (k === 1 ? one : `${k} ${many}`);
  const parts: string[] = [];
  if (r.removed.length) parts.push(`${n(r.removed.length, 'A comment', 'comments')} removed`);
  if (r.changed.length) parts.push(`${n(r.changed.length, 'a comment', 'comments')} updated`);
  if (r.added.length) parts.push(`${n(r.added.length, 'a comment', 'comments')} shown again`);
  if (!parts.length) return null;
  const s = parts.join(', ');
  return s[0].toUpperCase() + s.slice(1) + '.';
}

export class CommentThread {
  comments: Comment[] = $state([]);
  count = $state(0);
  nextAfter: number | null = $state(null);
  status: 'idle' | 'loading' | 'ready' | 'error' = $state('idle');
  error: string | null = $state(null);
  posting = $state(false);
  /** per comment: an action's refusal */
  actionError: string | null = $state(null);
  /** what the last resync changed, for the panel's status line */
  notice: string | null = $state(null);
  /** the wait a 429 named (Retry-After): Post is disabled until it ends */
  readonly postWait: Countdown;
  /**
   * Called just before a poll or a resync changes the list, with the ids it removes: the panel keeps what the
   * reader is working on where it was (the focused textarea does not move on screen; focus in a removed comment
   * goes to the heading).
   */
  beforeChange: ((removed: number[]) => void) | null = null;

  private postRefusal: string | null = $state(null);
  private waitRefusal: ApiRefusal | null = $state(null);
  private visible = false;
  private timer: unknown = null;
  private inFlight = false;
  private generation = 0;
  /** ids this reader deleted: an answer sent before the delete must not bring them back */
  private gone = new Set<number>();
  /** bumped by every change made here (post, delete, hide): a resync that overlapped one is not applied */
  private edits = 0;
  /** the newest comment id this reader was shown */
  private seen = 0;
  private ticks = 0;
  private resyncDue = false;
  /** the count and length the last resync left, so a lasting mismatch does not resync at every poll */
  private synced = { count: -1, length: -1 };

  constructor(
    readonly section: string,
    readonly pageSize = 50,
    readonly pollMs = POLL_MS,
    private timers: Timers = realTimers,
    readonly resyncEvery = RESYNC_EVERY,
    now: () => number = () => Date.now(),
  ) {
    if (!SECTION_RE.test(section)) throw new Error(`${section}: not a section id (page#anchor, lower case)`);
    this.postWait = new Countdown(timers, now);
  }

  /** While a 429's wait counts down: the server's reason (its message); else null. */
  get postWaitReason(): string | null {
    return this.waitRefusal && this.postWait.active ? this.waitRefusal.message : null;
  }

  /** Why the last post failed, or how long to wait before the next one (counting down); null when neither. */
  get postError(): string | null {
    const reason = this.postWaitReason;
    if (reason !== null) return `Too many comments — try again in ${waitWords(this.postWait.left)}. (${reason})`;
    return this.postRefusal;
  }

  private lastId(): number {
    return this.comments.length ? this.comments[this.comments.length - 1].id : 0;
  }

  /** Adds a page's comments not shown yet; `live`: they come unasked (a poll), so `beforeChange` is told. */
  private merge(page: CommentPage, live = false): void {
    const have = new Set(this.comments.map((c) => c.id));
    const fresh = page.comments.filter((c) => !have.has(c.id) && !this.gone.has(c.id));
    if (fresh.length) {
      if (live) this.beforeChange?.([]);
      this.comments = [...this.comments, ...fresh].sort((a, b) => a.id - b.id);
    }
    for (const c of fresh) this.seen = Math.max(this.seen, c.id);
    this.count = page.count;
  }

  /** The first page, from scratch (after sign-in or sign-out, what one may see changes). */
  async load(): Promise<void> {
    const gen = ++this.generation;
    this.status = 'loading';
    this.error = null;
    try {
      const page = await getJson<CommentPage>(commentsUrl(this.section, null, this.pageSize));
      if (gen !== this.generation) return;
      this.comments = [];
      this.gone.clear();
      this.seen = 0;
      this.merge(page);
      this.nextAfter = page.next_after;
      this.status = 'ready';
      this.ticks = 0;
      this.resyncDue = false;
      this.synced = { count: this.count, length: this.comments.length };
    } catch (e) {
      if (gen !== this.generation) return;
      this.status = 'error';
      this.error = commentError(e);
    }
  }

  /** The page after the last one loaded. */
  async loadMore(): Promise<void> {
    if (this.nextAfter === null) return;
    const gen = this.generation;
    try {
      const page = await getJson<CommentPage>(commentsUrl(this.section, this.nextAfter, this.pageSize));
      if (gen !== this.generation) return;
      this.merge(page);
      this.nextAfter = page.next_after;
    } catch (e) {
      this.error = commentError(e);
    }
  }

  /**
   * New comments since the last one shown. While older pages are still to be loaded ("Load more"), only the
   * count is refreshed (limit=1), so the poll never pages through the section on its own. A count that says the
   * list is out of step (fewer than before behind "Load more"; not the list's length once all is loaded) makes
   * the next step a resync.
   */
  async poll(): Promise<void> {
    if (this.inFlight || this.status !== 'ready') return;
    this.inFlight = true;
    const gen = this.generation;
    try {
      if (this.nextAfter !== null) {
        const page = await getJson<CommentPage>(commentsUrl(this.section, null, 1));
        if (gen !== this.generation) return;
        if (page.count < this.count) this.resyncDue = true;
        this.count = page.count;
      } else {
        const page = await getJson<CommentPage>(commentsUrl(this.section, this.lastId(), this.pageSize));
        if (gen !== this.generation) return;
        this.merge(page, true);
        this.nextAfter = page.next_after;
        const n = this.comments.length;
        if (page.next_after === null && n !== page.count && (page.count !== this.synced.count || n !== this.synced.length))
          this.resyncDue = true;
      }
    } catch {
      /* a missed poll: the next one tries again */
    } finally {
      this.inFlight = false;
    }
  }

  /**
   * Fetches the loaded range again (from the start, 100 a request, up to the last comment loaded, or to the end
   * when everything is loaded) and reconciles the list with it: see `reconcile`. Not applied if a post, delete
   * or hide made here overlapped it (the next tick tries again).
   */
  async resync(): Promise<void> {
    if (this.inFlight || this.status !== 'ready') return;
    this.inFlight = true;
    const gen = this.generation;
    const edits = this.edits;
    const upTo = this.nextAfter ?? Infinity;
    try {
      const got: Comment[] = [];
      let page: CommentPage | null = null;
      let after = 0;
      for (let i = 0; i < RESYNC_MAX_PAGES; i++) {
        page = await getJson<CommentPage>(commentsUrl(this.section, after, RESYNC_LIMIT));
        if (gen !== this.generation) return;
        got.push(...page.comments);
        if (page.next_after === null || page.next_after >= upTo) break;
        after = page.next_after;
      }
      if (!page) return;
      if (this.edits !== edits) {
        this.resyncDue = true;
        return;
      }
      // the server's answer is complete up to `covered`
      const covered = page.next_after ?? Infinity;
      const r = reconcile(this.comments, got, Math.min(upTo, covered), this.gone, this.seen);
      for (const id of r.newer) this.seen = Math.max(this.seen, id);
      if (r.removed.length || r.changed.length || r.added.length || r.newer.length) {
        this.beforeChange?.(r.removed);
        this.comments = r.comments;
      }
      this.notice = changeNotice(r) ?? this.notice;
      this.count = page.count;
      // behind "Load more": if nothing is left after the loaded range, there is nothing more to load
      if (upTo !== Infinity && covered === Infinity && !got.some((c) => c.id > upTo)) this.nextAfter = null;
      this.synced = { count: this.count, length: this.comments.length };
      this.resyncDue = false;
      this.ticks = 0;
    } catch {
      /* missed: the next tick polls, and the resync is tried again at its time */
    } finally {
      this.inFlight = false;
    }
  }

  /** One step of the chain: a resync when one is due, else a poll (and a resync at once if the poll asks). */
  async tick(): Promise<void> {
    this.ticks++;
    if (this.resyncDue || this.ticks >= this.resyncEvery) return this.resync();
    await this.poll();
    if (this.resyncDue) await this.resync();
  }

  async post(body: string): Promise<boolean> {
    const problem = bodyProblem(body);
    if (problem) {
      this.postRefusal = problem;
      return false;
    }
    if (this.postWait.active) return false;
    this.posting = true;
    this.postRefusal = null;
    this.waitRefusal = null;
    try {
      const { comment } = await postJson<{ comment: Comment }>('/api/comments', { section: this.section, body });
      this.edits++;
      if (this.nextAfter === null && !this.comments.some((c) => c.id === comment.id)) {
        this.comments = [...this.comments, comment].sort((a, b) => a.id - b.id);
        this.seen = Math.max(this.seen, comment.id);
      }
      this.count += 1;
      return true;
    } catch (e) {
      if (e instanceof ApiRefusal && e.status === 429 && e.retryAfter) {
        this.waitRefusal = e;
        this.postWait.start(e.retryAfter, () => (this.waitRefusal = null));
      } else this.postRefusal = commentError(e);
      return false;
    } finally {
      this.posting = false;
    }
  }

  async remove(id: number): Promise<void> {
    this.actionError = null;
    try {
      await deleteJson(`/api/comments/${id}`);
      this.edits++;
      this.gone.add(id);
      const before = this.comments.length;
      this.comments = this.comments.filter((c) => c.id !== id);
      if (this.comments.length < before) this.count = Math.max(0, this.count - 1);
    } catch (e) {
      this.actionError = commentError(e);
    }
  }

  async setHidden(id: number, hidden: boolean): Promise<void> {
    this.actionError = null;
    try {
      const { comment } = await postJson<{ comment: Comment }>(`/api/comments/${id}/${hidden ? 'hide' : 'unhide'}`, {});
      this.edits++;
      this.comments = this.comments.map((c) => (c.id === id ? { ...c, hidden: comment.hidden } : c));
    } catch (e) {
      this.actionError = commentError(e);
    }
  }

  // ---- polling --------------------------------------------------------------------------------------

  /**
   * Whether the panel can be seen (on screen and the tab visible): polls run only while it can. Coming back
   * into view, the first tick is a resync (what was missed meanwhile may include deletes).
   */
  setVisible(v: boolean): void {
    if (v === this.visible) return;
    this.visible = v;
    if (v) this.arm();
    else {
      this.disarm();
      if (this.status === 'ready') this.resyncDue = true;
    }
  }

  get polling(): boolean {
    return this.timer !== null;
  }

  private arm(): void {
    if (this.timer !== null || !this.visible) return;
    this.timer = this.timers.setTimeout(async () => {
      this.timer = null;
      await this.tick();
      this.arm();
    }, this.pollMs);
  }

  private disarm(): void {
    if (this.timer !== null) this.timers.clearTimeout(this.timer);
    this.timer = null;
  }

  /** Stops everything (the panel is gone). */
  destroy(): void {
    this.visible = false;
    this.disarm();
    this.postWait.stop();
    this.generation++;
  }
}

/** A comment's time as the panel shows it: the reader's local date and time, to the minute. */
export function formatTime(createdAt: string): string {
  const d = new Date(createdAt);
  if (Number.isNaN(d.getTime())) return String(createdAt);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}
