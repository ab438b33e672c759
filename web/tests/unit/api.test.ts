import { afterEach, describe, expect, it } from 'vitest';
import { ApiRefusal, describeError, postJson, refusalOf, setFetch, getJson } from '../../src/lib/api';

afterEach(() => setFetch((i, init) => fetch(i, init)));

describe('API refusals', () => {
  it('reads the {"error": {code, message, field}} body', async () => {
    const res = new Response(JSON.stringify({ error: { code: 'bad_request', message: 'x: expected rows of width 64, got "3 columns"', field: 'x' } }), { status: 400 });
    const e = await refusalOf(res);
    expect(e).toBeInstanceOf(ApiRefusal);
    expect([e.status, e.code, e.field, e.message]).toEqual([400, 'bad_request', 'x', 'x: expected rows of width 64, got "3 columns"']);
    expect(describeError(e)).toBe('The engine refused the request — x: expected rows of width 64, got "3 columns" (field “x”). [400 bad_request]');
  });
  it('copes with a body that is not the API’s', async () => {
    const e = await refusalOf(new Response('upstream down', { status: 502, statusText: 'Bad Gateway' }));
    expect([e.status, e.code, e.message, e.field]).toEqual([502, 'http_502', 'upstream down', null]);
  });
  it('says when the server cannot be reached', () => {
    expect(describeError(new TypeError('Failed to fetch'))).toMatch(/could not be reached/);
  });
  it('postJson sends JSON and throws the refusal; getJson reads JSON', async () => {
    let seen: RequestInit | undefined;
    setFetch(async (_u, init) => {
      seen = init;
      return new Response(JSON.stringify({ error: { code: 'too_costly', message: 'x: too costly', field: 'x' } }), { status: 413 });
    });
    await expect(postJson('/api/compute/ffn', { a: 1 })).rejects.toMatchObject({ status: 413, code: 'too_costly' });
    expect(seen?.method).toBe('POST');
    expect(seen?.body).toBe('{"a":1}');
    setFetch(async () => new Response('{"ok":true}', { status: 200 }));
    expect(await getJson('/api/health')).toEqual({ ok: true });
  });
});
