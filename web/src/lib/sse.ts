// Server-Sent Events, read with fetch (so a run's stream is aborted like any request) and parsed here
// (the WHATWG event-stream format: `event:`, `data:` (lines joined by "\n"), `id:`, `retry:`, comments `:`,
// an event dispatched at a blank line; "\n", "\r\n" and "\r" all end a line).
import { refusalOf, send, type FetchLike } from './api';

export interface SseEvent {
  event: string;
  data: string;
  id: string | null;
}

export class SseParser {
  private buffer = '';
  private event = '';
  private data: string[] = [];
  private id: string | null = null;
  private sawCr = false;

  /** Feeds a chunk of text (any split); returns the events completed by it. */
  push(chunk: string): SseEvent[] {
    const out: SseEvent[] = [];
    let text = chunk;
    // A "\r\n" split across chunks: the "\r" already ended the line, drop the "\n".
    if (this.sawCr && text.startsWith('\n')) text = text.slice(1);
    this.sawCr = false;
    this.buffer += text;
    for (;;) {
      const m = /\r\n|\r|\n/.exec(this.buffer);
      if (!m) break;
      // A lone "\r" at the very end may be the first half of "\r\n": end the line, remember it.
      if (m[0] === '\r' && m.index === this.buffer.length - 1) this.sawCr = true;
      const line = this.buffer.slice(0, m.index);
      this.buffer = this.buffer.slice(m.index + m[0].length);
      const ev = this.line(line);
      if (ev) out.push(ev);
    }
    return out;
  }

  private line(line: string): SseEvent | null {
    if (line === '') {
      if (this.data.length === 0) {
        this.event = '';
        return null;
      }
      const ev = { event: this.event || 'message', data: this.data.join('\n'), id: this.id };
      this.event = '';
      this.data = [];
      return ev;
    }
    if (line.startsWith(':')) return null;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') this.event = value;
    else if (field === 'data') this.data.push(value);
    else if (field === 'id' && !value.includes('\0')) this.id = value;
    return null;
  }
}

/** Parses a whole stream's text at once (tests, replays). */
export function parseSse(text: string): SseEvent[] {
  const p = new SseParser();
  return [...p.push(text), ...p.push('\n\n')];
}

/** Reads a response's event stream to its end, calling `onEvent` with each event's data parsed as JSON (the text
 * when it is not JSON). An exception thrown by `onEvent` stops the reading (and cancels the stream). */
export async function readEventStream(res: Response, onEvent: (name: string, data: unknown) => void): Promise<void> {
  if (!res.body) throw new Error(`${res.url || 'the response'}: the response has no body to stream`);
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  const parser = new SseParser();
  const dispatch = (evs: SseEvent[]) => {
    for (const ev of evs) {
      let data: unknown = ev.data;
      try {
        data = JSON.parse(ev.data);
      } catch {
        /* keep the text */
      }
      onEvent(ev.event, data);
    }
  };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      dispatch(parser.push(decoder.decode(value, { stream: true })));
    }
    dispatch(parser.push(decoder.decode() + '\n\n'));
  } catch (e) {
    reader.cancel().catch(() => {});
    throw e;
  }
}

/** Whether a response is an event stream (a server may answer a request for one with plain JSON). */
export function isEventStream(res: Response): boolean {
  return (res.headers.get('Content-Type') ?? '').toLowerCase().startsWith('text/event-stream');
}

/**
 * Reads `url`'s event stream, calling `onEvent` with each event's parsed JSON data, until the stream ends or
 * `signal` aborts. A non-2xx answer throws an ApiRefusal. `init` makes it another request than a GET (a POST
 * whose answer streams: POST /api/assistant); its headers are added to `Accept: text/event-stream`.
 */
export async function streamEvents(
  url: string,
  onEvent: (name: string, data: unknown) => void,
  signal: AbortSignal,
  fetchImpl: FetchLike = send, // the API's one wrapper (it adds X-CSRF-Token only to state changes)
  init: RequestInit = {},
): Promise<void> {
  const headers = new Headers(init.headers);
  headers.set('Accept', 'text/event-stream');
  const res = await fetchImpl(url, { ...init, signal, headers });
  if (!res.ok) throw await refusalOf(res);
  await readEventStream(res, onEvent);
}
