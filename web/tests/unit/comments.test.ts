// The comments thread (comments.svelte.ts) with a mocked fetch and fake timers: paging, posting, the poll and
// when it stops.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { setFetch, type Comment } from '../../src/lib/api';
import { CommentThread, bodyProblem, commentLength, commentsUrl, formatTime, SECTION_RE } from '../../src/comments.svelte';

const S = 'ffn#position-wise';
const mk = (id: number, extra: Partial<Comment> = {}): Comment => ({ id, section: S, author: 'ada', body: `c${id}`, html: `<p>c${id}</p>`, created_at: `2026-12-01T22:${String(10 + id).padStart(2, '0')}:00Z`, hidden: false, ...extra });

/** A fake server: `all` comments; GET honours after and limit like the real one. */
let all: Comment[] = [];
let gets: URL[] = [];
let other: { method: string; url: string; body: string | null }[] = [];
let pending: (() => void) | null = null; // when set, GETs wait for it
beforeEach(() => {
  all = [];
  gets = [];
  other = [];
  pending = null;
  setFetch(async (url, init) => {
    const method = init?.method ?? 'GET';
    if (method === 'GET') {
      const u = new URL(url, 'http://x');
      gets.push(u);
      if (pending) await new Promise<void>((r) => (pending = r));
      const after = Number(u.searchParams.get('after') ?? 0);
      const limit = Number(u.searchParams.get('limit') ?? 100);
      const rest = all.filter((c) => c.id > after);
      const page = rest.slice(0, limit);
      return Response.json({ comments: page, count: all.length, next_after: rest.length > limit ? page.at(-1)!.id : null });
    }
    other.push({ method, url, body: typeof init?.body === 'string' ? init.body : null });
    if (method === 'DELETE') return new Response(null, { status: 204 });
    if (url.endsWith('/hide')) return Response.json({ comment: { ...mk(Number(url.split('/')[3])), hidden: true } });
    if (url === '/api/comments') {
      const { body } = JSON.parse(init!.body as string);
      if (body === 'too fast') return Response.json({ error: { code: 'too_many_comments', message: 'comments: expected at most 6 a minute from one account', field: null } }, { status: 429, headers: { 'Retry-After': '60' } });
      const c = mk(all.length ? all.at(-1)!.id + 1 : 1, { body });
      all.push(c);
      return Response.json({ comment: c }, { status: 201 });
    }
    return new Response('{}');
  });
});
afterEach(() => {
  vi.useRealTimers();
  setFetch((i, init) => fetch(i, init));
});

describe('comment helpers', () => {
  it('section ids, URLs, lengths, times', () => {
    for (const s of ['other-half#take-aways', 'ffn#position-wise', 'layernorm#step-by-step', 'gradflow#depth', 'addnorm#placement', 'train#copy-task']) expect(SECTION_RE.test(s)).toBe(true);
    expect(SECTION_RE.test('FFN#x')).toBe(false);
    expect(() => new CommentThread('no-anchor')).toThrow(/section id/);
    expect(commentsUrl(S, 12, 50)).toBe('/api/comments?section=ffn%23position-wise&after=12&limit=50');
    expect(commentsUrl(S)).toBe('/api/comments?section=ffn%23position-wise');
    expect(commentLength('é🙂a')).toBe(3); // code points, as the server counts
    expect(bodyProblem('  \n')).toMatch(/Write something/);
    expect(bodyProblem('x'.repeat(4000))).toBeNull();
    expect(bodyProblem('x'.repeat(4001))).toMatch(/1 characters too long/);
    expect(formatTime('2026-12-01T22:14:12Z')).toMatch(/^2026-12-0[12] \d\d:14$/);
    expect(formatTime('not a time')).toBe('not a time');
  });
});

describe('CommentThread', () => {
  it('loads the first page oldest first, then "load more" pages after it', async () => {
    all = Array.from({ length: 5 }, (_, i) => mk(i + 1));
    const t = new CommentThread(S, 2);
    await t.load();
    expect([t.comments.map((c) => c.id), t.count, t.nextAfter, t.status]).toEqual([[1, 2], 5, 2, 'ready']);
    await t.loadMore();
    expect([t.comments.map((c) => c.id), t.nextAfter]).toEqual([[1, 2, 3, 4], 4]);
    await t.loadMore();
    expect([t.comments.map((c) => c.id), t.nextAfter]).toEqual([[1, 2, 3, 4, 5], null]);
    await t.loadMore(); // nothing more: no request
    expect(gets.map((u) => u.searchParams.get('after'))).toEqual([null, '2', '4']);
  });

  it('posts (shown at once, count up), refuses empty and over-long bodies without a request, says the server’s refusal', async () => {
    const t = new CommentThread(S);
    await t.load();
    expect(await t.post('   ')).toBe(false);
    expect(await t.post('y'.repeat(4001))).toBe(false);
    expect(other).toEqual([]);
    expect(await t.post('hello *you*')).toBe(true);
    expect(JSON.parse(other[0].body!)).toEqual({ section: S, body: 'hello *you*' });
    expect([t.comments.map((c) => c.body), t.count, t.posting, t.postError]).toEqual([['hello *you*'], 1, false, null]);
    expect(await t.post('too fast')).toBe(false);
    expect(t.postError).toBe('comments: expected at most 6 a minute from one account [429 too_many_comments]');
  });

  it('deletes and hides through the API and updates the list', async () => {
    all = [mk(1), mk(2)];
    const t = new CommentThread(S);
    await t.load();
    await t.setHidden(2, true);
    expect(t.comments.find((c) => c.id === 2)!.hidden).toBe(true);
    await t.remove(1);
    expect([t.comments.map((c) => c.id), t.count]).toEqual([[2], 1]);
    expect(other.map((o) => `${o.method} ${o.url}`)).toEqual(['POST /api/comments/2/hide', 'DELETE /api/comments/1']);
  });

  it('polls ?after=<last id> every 5 s while visible, one at a time, and stops when hidden', async () => {
    vi.useFakeTimers();
    all = [mk(1)];
    const t = new CommentThread(S);
    await t.load();
    gets = [];
    await vi.advanceTimersByTimeAsync(20_000);
    expect(gets).toEqual([]); // not visible yet: no poll

    t.setVisible(true);
    all.push(mk(2), mk(3));
    await vi.advanceTimersByTimeAsync(4_999);
    expect(gets.length).toBe(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(gets.map((u) => u.searchParams.get('after'))).toEqual(['1']);
    expect(t.comments.map((c) => c.id)).toEqual([1, 2, 3]);
    await vi.advanceTimersByTimeAsync(5_000);
    expect(gets.map((u) => u.searchParams.get('after'))).toEqual(['1', '3']);

    // a slow answer: no second poll piles up while the first waits
    pending = () => {};
    await vi.advanceTimersByTimeAsync(5_000);
    expect(gets.length).toBe(3);
    await vi.advanceTimersByTimeAsync(30_000);
    expect(gets.length).toBe(3);
    pending!();
    pending = null;
    await vi.advanceTimersByTimeAsync(5_000);
    expect(gets.length).toBe(4);

    // hidden (off screen or tab hidden): the timer is cleared, nothing more is asked
    t.setVisible(false);
    expect(t.polling).toBe(false);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(gets.length).toBe(4);
    // visible again: polling resumes, and toggling quickly never arms two timers
    t.setVisible(true);
    t.setVisible(false);
    t.setVisible(true);
    await vi.advanceTimersByTimeAsync(5_000);
    expect(gets.length).toBe(5);
    t.destroy();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(gets.length).toBe(5);
  });

  it('while older pages wait behind "Load more", the poll refreshes only the count', async () => {
    vi.useFakeTimers();
    all = Array.from({ length: 3 }, (_, i) => mk(i + 1));
    const t = new CommentThread(S, 2);
    await t.load();
    all.push(mk(4));
    t.setVisible(true);
    await vi.advanceTimersByTimeAsync(5_000);
    expect(gets.at(-1)!.searchParams.get('limit')).toBe('1');
    expect([t.comments.map((c) => c.id), t.count]).toEqual([[1, 2], 4]);
    t.destroy();
  });
});
