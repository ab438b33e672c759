import { describe, expect, it } from 'vitest';
import { isEventStream, parseSse, readEventStream, SseParser, streamEvents } from '../../src/lib/sse';
import { ApiRefusal } from '../../src/lib/api';

const STREAM =
  'event: status\ndata: {"position":1,"run_id":1,"status":"queued"}\n\n' +
  'event: status\ndata: {"run_id":1,"status":"running"}\n\n' +
  ': a comment\n' +
  'event: step\ndata: {"step":1,"steps":2,"loss":1.88,"accuracy":0.34}\n\n' +
  'event: step\ndata: {"step":2,"steps":2,"loss":1.73,"accuracy":0.39}\n\n' +
  'event: end\ndata: {"final":{"accuracy":1.0,"loss":0.0007},"run_id":1,"status":"finished"}\n\n';

describe('SSE parsing', () => {
  it('parses the server’s run stream', () => {
    const evs = parseSse(STREAM);
    expect(evs.map((e) => e.event)).toEqual(['status', 'status', 'step', 'step', 'end']);
    expect(JSON.parse(evs[2].data)).toEqual({ step: 1, steps: 2, loss: 1.88, accuracy: 0.34 });
  });

  it('gives the same events whatever the chunking, one character at a time included', () => {
    const whole = parseSse(STREAM);
    for (const size of [1, 2, 3, 7, 50]) {
      const p = new SseParser();
      const got = [];
      for (let i = 0; i < STREAM.length; i += size) got.push(...p.push(STREAM.slice(i, i + size)));
      expect(got).toEqual(whole);
    }
  });

  it('handles CRLF and CR line ends, split CRLF included', () => {
    const crlf = STREAM.replaceAll('\n', '\r\n');
    expect(parseSse(crlf)).toEqual(parseSse(STREAM));
    expect(parseSse(STREAM.replaceAll('\n', '\r'))).toEqual(parseSse(STREAM));
    const p = new SseParser();
    const got = [...p.push('event: a\r'), ...p.push('\ndata: 1\r'), ...p.push('\n\r'), ...p.push('\n')];
    expect(got).toEqual([{ event: 'a', data: '1', id: null }]);
  });

  it('joins multi-line data, defaults the event name, keeps ids, ignores unknown fields', () => {
    const evs = parseSse('data: a\ndata:b\nid: 7\nfoo: bar\n\ndata\n\nevent: x\n\n');
    expect(evs).toEqual([
      { event: 'message', data: 'a\nb', id: '7' },
      { event: 'message', data: '', id: '7' },
    ]);
  });

  it('does not dispatch an unterminated event until the stream ends', () => {
    const p = new SseParser();
    expect(p.push('event: step\ndata: {"step":1}')).toEqual([]);
    expect(p.push('\n\n')).toEqual([{ event: 'step', data: '{"step":1}', id: null }]);
  });
});

function streamResponse(chunks: string[], status = 200): Response {
  const enc = new TextEncoder();
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      for (const ch of chunks) c.enqueue(enc.encode(ch));
      c.close();
    },
  });
  return new Response(body, { status, headers: { 'Content-Type': 'text/event-stream' } });
}

describe('streamEvents', () => {
  it('reads a fetched stream in chunks and hands over parsed JSON', async () => {
    const got: [string, unknown][] = [];
    const chunks = [STREAM.slice(0, 30), STREAM.slice(30, 31), STREAM.slice(31, 200), STREAM.slice(200)];
    await streamEvents('/api/runs/1/events', (n, d) => got.push([n, d]), new AbortController().signal, async () => streamResponse(chunks));
    expect(got.map(([n]) => n)).toEqual(['status', 'status', 'step', 'step', 'end']);
    expect(got[4][1]).toEqual({ final: { accuracy: 1.0, loss: 0.0007 }, run_id: 1, status: 'finished' });
  });

  it('dispatches a last event the server did not terminate', async () => {
    const got: string[] = [];
    await streamEvents('/x', (n) => got.push(n), new AbortController().signal, async () => streamResponse(['event: end\ndata: {}']));
    expect(got).toEqual(['end']);
  });

  it('turns a refusal into an ApiRefusal', async () => {
    const res = new Response(JSON.stringify({ error: { code: 'not_found', message: 'run 99: no such run', field: 'id' } }), { status: 404 });
    await expect(streamEvents('/api/runs/99/events', () => {}, new AbortController().signal, async () => res)).rejects.toBeInstanceOf(ApiRefusal);
  });

  it('makes a POST whose answer streams (init: method, body, headers; Accept stays text/event-stream)', async () => {
    let sent: { url: string; init?: RequestInit } | null = null;
    const got: string[] = [];
    await streamEvents(
      '/api/assistant',
      (n) => got.push(n),
      new AbortController().signal,
      async (url, init) => {
        sent = { url, init };
        return streamResponse(['event: token\ndata: {"text":"a"}\n\n', 'event: done\ndata: {}\n\n']);
      },
      { method: 'POST', body: '{"question":"q"}', headers: { 'Content-Type': 'application/json' } },
    );
    expect(got).toEqual(['token', 'done']);
    const h = new Headers(sent!.init!.headers);
    expect([sent!.init!.method, sent!.init!.body, h.get('Accept'), h.get('Content-Type')]).toEqual(['POST', '{"question":"q"}', 'text/event-stream', 'application/json']);
  });

  it('readEventStream stops (and cancels the stream) when a handler throws; isEventStream reads the content type', async () => {
    const res = streamResponse(['event: a\ndata: 1\n\nevent: b\ndata: 2\n\n']);
    expect(isEventStream(res)).toBe(true);
    expect(isEventStream(new Response('{}', { headers: { 'Content-Type': 'application/json' } }))).toBe(false);
    const got: string[] = [];
    await expect(
      readEventStream(res, (n) => {
        got.push(n);
        throw new Error('stop here');
      }),
    ).rejects.toThrow('stop here');
    expect(got).toEqual(['a']);
  });
});
