// The comments thread (comments.svelte.ts) with a mocked fetch and fake timers: paging, posting, the poll and
// when it stops, the resync that makes others' deletes and hides show (and its reconcile), and the wait a 429
// names.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { setFetch, type Comment } from '../../src/lib/api';
import { CommentThread, bodyProblem, changeNotice, commentLength, commentsUrl, formatTime, reconcile, RESYNC_EVERY, SECTION_RE } from '../../src/comments.svelte';

const S = 'ffn#position-wise';
const mk = (id: number, extra: Partial<Comment> = {}): Comment => ({ id, section: S, author: 'ada', body: `c${id}`, html: `<p>c${id}</p>`, created_at: `2026-12-01T22:${String(10 + id).padStart(2, '0')}:00Z`, hidden: false, ...extra });

/**
 * A fake server: `all` comments; GET honours after and limit like the real one, and leaves hidden ones out (and
 * out of the count) unless `teacherView`. Its DELETE answers 204 but leaves `all` alone: the tests change `all`
 * to play the other readers.
 */
let all: Comment[] = [];
let teacherView = false;
let postRetryAfter: string | null = '60';
let gets: URL[] = [];
let other: { method: string; url: string; body: string | null }[] = [];
let pending: (() => void) | null = null; // when set, GETs wait for it
beforeEach(() => {
  all = [];
  teacherView = false;
  postRetryAfter = '60';
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
      const seen = all.filter((c) => teacherView || !c.hidden);
      const rest = seen.filter((c) => c.id > after);
      const page = rest.slice(0, limit).map((c) => ({ ...c }));
      return Response.json({ comments: page, count: seen.length, next_after: rest.length > limit ? page.at(-1)!.id : null });
    }
    other.push({ method, url, body: typeof init?.body === 'string' ? init.body : null });
    if (method === 'DELETE') return new Response(null, { status: 204 });
    if (url.endsWith('/hide')) return Response.json({ comment: { ...mk(Number(url.split('/')[3])), hidden: true } });
    if (url === '/api/comments') {
      const { body } = JSON.parse(init!.body as string);
      if (body === 'too fast')
        return Response.json(
          { error: { code: 'too_many_comments', message: 'comments: expected at most 6 a minute from one account', field: null } },
          { status: 429, headers: postRetryAfter === null ? {} : { 'Retry-After': postRetryAfter } },
        );
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
    postRetryAfter = null; // a 429 without Retry-After: the server's message as it is
    expect(await t.post('too fast')).toBe(false);
    expect([t.postError, t.postWait.active]).toEqual(['comments: expected at most 6 a minute from one account [429 too_many_comments]', false]);
  });

  it('a 429 with Retry-After: the wait said in words and counted down, Post refused meanwhile, then allowed again', async () => {
    vi.useFakeTimers();
    const t = new CommentThread(S);
    await t.load();
    expect(await t.post('too fast')).toBe(false);
    expect(t.postError).toBe('Too many comments — try again in 60 s. (comments: expected at most 6 a minute from one account)');
    expect([t.postWait.active, t.postWait.left, t.postWaitReason]).toEqual([true, 60, 'comments: expected at most 6 a minute from one account']);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(t.postError).toMatch(/try again in 59 s\./);
    await vi.advanceTimersByTimeAsync(40_000);
    expect(t.postError).toMatch(/try again in 19 s\./);
    const sent = other.length;
    expect(await t.post('while waiting')).toBe(false); // not even asked
    expect(other.length).toBe(sent);
    await vi.advanceTimersByTimeAsync(19_000);
    expect([t.postWait.active, t.postError, t.postWaitReason]).toEqual([false, null, null]);
    expect(await t.post('now it may')).toBe(true);
    expect(t.comments.at(-1)!.body).toBe('now it may');
    t.destroy();
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

describe('reconcile (a re-fetch of the loaded range against the list shown)', () => {
  it('removes what is gone, takes changed flags and HTML, puts back unhidden ones, keeps the rest as it is', () => {
    const shown = [mk(1), mk(2), mk(3), mk(5), mk(8)];
    const server = [mk(1), { ...mk(3), hidden: true }, mk(4), { ...mk(5), html: '<p>c5, fixed</p>' }, mk(8), mk(9)];
    const r = reconcile(shown, server, Infinity);
    expect(r.comments.map((c) => c.id)).toEqual([1, 3, 4, 5, 8, 9]);
    expect([r.removed, r.changed, r.added, r.newer]).toEqual([[2], [3, 5], [4], [9]]);
    expect(r.comments[0]).toBe(shown[0]); // unchanged: the same object (nothing drawn again)
    expect(r.comments[4]).toBe(shown[4]);
    expect(r.comments[1]).toBe(server[1]); // changed: the server's
    expect(r.comments[1].hidden).toBe(true);
    expect(r.comments[3].html).toBe('<p>c5, fixed</p>');
  });

  it('the server is right only up to upTo: beyond it the list is kept and the answer ignored', () => {
    const shown = [mk(1), mk(2), mk(3)];
    const r = reconcile(shown, [mk(1), mk(4)], 2);
    expect(r.comments.map((c) => c.id)).toEqual([1, 3]);
    expect([r.removed, r.added, r.newer]).toEqual([[2], [], []]);
  });

  it('never brings back what this reader deleted, even from an answer sent before the delete', () => {
    const r = reconcile([mk(1), mk(3)], [mk(1), mk(2), mk(3)], Infinity, new Set([2]));
    expect([r.comments.map((c) => c.id), r.added]).toEqual([[1, 3], []]);
  });

  it('tells a comment put back (unhidden: not after the newest seen) from a new one', () => {
    const r = reconcile([mk(1)], [mk(1), mk(3), mk(4)], Infinity, new Set(), 3);
    expect([r.added, r.newer]).toEqual([[3], [4]]);
  });

  it('nothing changed: nothing to say', () => {
    const shown = [mk(1), mk(2)];
    const r = reconcile(shown, [mk(1), mk(2)], Infinity);
    expect([r.removed, r.changed, r.added, r.newer]).toEqual([[], [], [], []]);
    expect(r.comments.every((c, i) => c === shown[i])).toBe(true);
    expect(changeNotice(r)).toBeNull();
    expect(changeNotice({ removed: [2], changed: [], added: [] })).toBe('A comment removed.');
    expect(changeNotice({ removed: [2, 3], changed: [4], added: [1] })).toBe('2 comments removed, a comment updated, a comment shown again.');
  });
});

describe('CommentThread: deletes and hides by others, live', () => {
  const resyncs = () => gets.filter((u) => u.searchParams.get('limit') === '100');
  const polls = () => gets.filter((u) => u.searchParams.get('limit') !== '100');

  it('another reader’s delete, a teacher’s hide and unhide show at the next poll: the count says the list is out of step', async () => {
    vi.useFakeTimers();
    all = [mk(1), mk(2), mk(3)];
    const t = new CommentThread(S);
    await t.load();
    const kept = t.comments[0];
    t.setVisible(true);
    gets = [];

    all = all.filter((c) => c.id !== 2); // its author deletes it
    await vi.advanceTimersByTimeAsync(5_000);
    expect(gets.map((u) => [u.searchParams.get('after'), u.searchParams.get('limit')])).toEqual([['3', '50'], [null, '100']]);
    expect([t.comments.map((c) => c.id), t.count, t.notice]).toEqual([[1, 3], 2, 'A comment removed.']);
    expect(t.comments[0]).toBe(kept); // the others are not replaced

    all = all.map((c) => (c.id === 1 ? { ...c, hidden: true } : c)); // a teacher hides one: students no longer get it
    await vi.advanceTimersByTimeAsync(5_000);
    expect([t.comments.map((c) => c.id), t.count]).toEqual([[3], 1]);

    all = all.map((c) => ({ ...c, hidden: false })); // … and unhides it: back in its place
    await vi.advanceTimersByTimeAsync(5_000);
    expect([t.comments.map((c) => c.id), t.count, t.notice]).toEqual([[1, 3], 2, 'A comment shown again.']);

    // a new comment and a delete in the same 5 s: the poll brings the new one, the count the delete
    all = [...all.filter((c) => c.id !== 1), mk(4)];
    await vi.advanceTimersByTimeAsync(5_000);
    expect([t.comments.map((c) => c.id), t.count]).toEqual([[3, 4], 2]);

    // nothing changed: only the poll, no resync
    const before = resyncs().length;
    await vi.advanceTimersByTimeAsync(5_000);
    expect(resyncs().length).toBe(before);
    t.destroy();
  });

  it('what the count cannot see (a teacher reading another teacher’s hide) shows at the periodic resync, every 6 polls', async () => {
    vi.useFakeTimers();
    teacherView = true;
    all = [mk(1), mk(2)];
    const t = new CommentThread(S);
    await t.load();
    t.setVisible(true);
    gets = [];
    all = [mk(1), { ...mk(2), hidden: true }]; // the count a teacher gets does not change
    await vi.advanceTimersByTimeAsync(5_000 * (RESYNC_EVERY - 1));
    expect([polls().length, resyncs().length, t.comments[1].hidden]).toEqual([RESYNC_EVERY - 1, 0, false]);
    await vi.advanceTimersByTimeAsync(5_000);
    expect([polls().length, resyncs().length, t.comments[1].hidden, t.notice]).toEqual([RESYNC_EVERY - 1, 1, true, 'A comment updated.']);
    // one request every 5 s, never more: 12 in a minute
    await vi.advanceTimersByTimeAsync(30_000);
    expect(gets.length).toBe(12);
    t.destroy();
  });

  it('re-fetches the loaded range only, 100 a request: the first page and the "Load more" pages, not beyond', async () => {
    all = Array.from({ length: 250 }, (_, i) => mk(i + 1));
    const t = new CommentThread(S);
    await t.load();
    await t.loadMore();
    await t.loadMore();
    await t.loadMore();
    expect([t.comments.length, t.nextAfter]).toEqual([200, 200]);
    gets = [];
    all = all.filter((c) => ![10, 150, 230].includes(c.id));
    await t.resync();
    expect(gets.map((u) => [u.searchParams.get('after'), u.searchParams.get('limit')])).toEqual([[null, '100'], ['101', '100']]);
    expect([t.comments.length, t.comments.some((c) => c.id === 10 || c.id === 150), t.comments.at(-1)!.id, t.nextAfter, t.count]).toEqual([198, false, 200, 200, 247]);
    // all after the loaded range deleted: nothing is left behind "Load more"
    all = all.filter((c) => c.id <= 200);
    await t.resync();
    expect([t.nextAfter, t.comments.length]).toEqual([null, 198]);
  });

  it('a delete or hide made here while a resync is in flight is not undone by its answer', async () => {
    all = [mk(1), mk(2), mk(3)];
    const t = new CommentThread(S);
    await t.load();
    pending = () => {};
    const r = t.resync();
    await Promise.resolve();
    await t.remove(2); // the fake server keeps listing it: only `gone` keeps it out
    await t.setHidden(3, true);
    pending!();
    pending = null;
    await r;
    expect([t.comments.map((c) => [c.id, c.hidden])]).toEqual([[[1, false], [3, true]]]);
    all = [mk(1), mk(2), { ...mk(3), hidden: true }];
    teacherView = true;
    await t.resync(); // a later resync applies, and still leaves 2 out
    expect(t.comments.map((c) => c.id)).toEqual([1, 3]);
  });

  it('no resync on top of a poll, none while off screen; back into view, the first tick is a resync', async () => {
    vi.useFakeTimers();
    all = [mk(1), mk(2)];
    const t = new CommentThread(S);
    await t.load();
    t.setVisible(true);
    gets = [];
    pending = () => {};
    all = [mk(1)];
    await vi.advanceTimersByTimeAsync(5_000); // the poll hangs
    expect(gets.length).toBe(1);
    expect(await t.resync()).toBeUndefined(); // refused: one request at a time
    expect(gets.length).toBe(1);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(gets.length).toBe(1);
    pending!();
    pending = null;
    await vi.advanceTimersByTimeAsync(0); // the poll's count: out of step → resync in the same tick
    expect([gets.length, t.comments.map((c) => c.id)]).toEqual([2, [1]]);

    t.setVisible(false);
    all = [];
    await vi.advanceTimersByTimeAsync(120_000);
    expect(gets.length).toBe(2);
    t.setVisible(true);
    await vi.advanceTimersByTimeAsync(5_000);
    expect([gets.length, gets.at(-1)!.searchParams.get('limit'), t.comments.length]).toEqual([3, '100', 0]);
    t.destroy();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(gets.length).toBe(3);
  });
});
