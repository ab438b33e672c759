// One section's comments (contract section 5): the first page oldest first, "load more" pages after it, posting,
// deleting, hiding; and a poll for new ones (GET ?after=<last id>) every `pollMs` while the panel is visible.
// The poll is a chain of timeouts, each armed only after the previous answer came back, so a slow server never
// gets a second poll on top of the first, and none is sent while the panel is off screen or the tab hidden.
import { deleteJson, describeError, ApiRefusal, getJson, postJson, type Comment, type CommentPage } from './lib/api';

export const MAX_COMMENT_CHARS = 4000;
export const POLL_MS = 5000;
export const SECTION_RE = /^[a-z0-9][a-z0-9_-]{0,39}#[a-z0-9][a-z0-9_.-]{0,79}$/;

/** Characters as the server counts them (code points, not UTF-16 units). */
export function commentLength(body: string): number {
  let n = 0;
  for (const _ of body) n++;
  return n;
}

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

export interface Timers {
  setTimeout(f: () => void, ms: number): unknown;
  clearTimeout(id: unknown): void;
}
const realTimers: Timers = {
  setTimeout: (f, ms) => globalThis.setTimeout(f, ms),
  clearTimeout: (id) => globalThis.clearTimeout(id as ReturnType<typeof setTimeout>),
};

export class CommentThread {
  comments: Comment[] = $state([]);
  count = $state(0);
  nextAfter: number | null = $state(null);
  status: 'idle' | 'loading' | 'ready' | 'error' = $state('idle');
  error: string | null = $state(null);
  posting = $state(false);
  postError: string | null = $state(null);
  /** per comment: an action's refusal */
  actionError: string | null = $state(null);

  private visible = false;
  private timer: unknown = null;
  private inFlight = false;
  private generation = 0;

  constructor(
    readonly section: string,
    readonly pageSize = 50,
    readonly pollMs = POLL_MS,
    private timers: Timers = realTimers,
  ) {
    if (!SECTION_RE.test(section)) throw new Error(`${section}: not a section id (page#anchor, lower case)`);
  }

  private lastId(): number {
    return this.comments.length ? this.comments[this.comments.length - 1].id : 0;
  }

  private merge(page: CommentPage): void {
    const have = new Set(this.comments.map((c) => c.id));
    const fresh = page.comments.filter((c) => !have.has(c.id));
    if (fresh.length) this.comments = [...this.comments, ...fresh].sort((a, b) => a.id - b.id);
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
      this.merge(page);
      this.nextAfter = page.next_after;
      this.status = 'ready';
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
   * count is refreshed (limit=1), so the poll never pages through the section on its own.
   */
  async poll(): Promise<void> {
    if (this.inFlight || this.status !== 'ready') return;
    this.inFlight = true;
    const gen = this.generation;
    try {
      if (this.nextAfter !== null) {
        const page = await getJson<CommentPage>(commentsUrl(this.section, null, 1));
        if (gen === this.generation) this.count = page.count;
      } else {
        const page = await getJson<CommentPage>(commentsUrl(this.section, this.lastId(), this.pageSize));
        if (gen !== this.generation) return;
        this.merge(page);
        this.nextAfter = page.next_after;
      }
    } catch {
      /* a missed poll: the next one tries again */
    } finally {
      this.inFlight = false;
    }
  }

  async post(body: string): Promise<boolean> {
    const problem = bodyProblem(body);
    if (problem) {
      this.postError = problem;
      return false;
    }
    this.posting = true;
    this.postError = null;
    try {
      const { comment } = await postJson<{ comment: Comment }>('/api/comments', { section: this.section, body });
      if (this.nextAfter === null && !this.comments.some((c) => c.id === comment.id)) {
        this.comments = [...this.comments, comment].sort((a, b) => a.id - b.id);
      }
      this.count += 1;
      return true;
    } catch (e) {
      this.postError = commentError(e);
      return false;
    } finally {
      this.posting = false;
    }
  }

  async remove(id: number): Promise<void> {
    this.actionError = null;
    try {
      await deleteJson(`/api/comments/${id}`);
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
      this.comments = this.comments.map((c) => (c.id === id ? { ...c, hidden: comment.hidden } : c));
    } catch (e) {
      this.actionError = commentError(e);
    }
  }

  // ---- polling --------------------------------------------------------------------------------------

  /** Whether the panel can be seen (on screen and the tab visible): polls run only while it can. */
  setVisible(v: boolean): void {
    if (v === this.visible) return;
    this.visible = v;
    if (v) this.arm();
    else this.disarm();
  }

  get polling(): boolean {
    return this.timer !== null;
  }

  private arm(): void {
    if (this.timer !== null || !this.visible) return;
    this.timer = this.timers.setTimeout(async () => {
      this.timer = null;
      await this.poll();
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
