// How long to wait, in words: what the app says when the server answers 429 with a Retry-After
// ("Too many tries — try again in 42 s").

/**
 * "42 s", "90 s", "2 min", "2 min 5 s", "1 h 3 min": whole seconds (rounded up) below two minutes, so that a
 * countdown from 60 reads 60 s, 59 s, …; 0 and less: "a moment".
 */
export function waitWords(seconds: number): string {
  const s = Math.ceil(seconds);
  if (!(s > 0)) return 'a moment';
  if (s < 120) return `${s} s`;
  if (s < 3600) {
    const m = Math.floor(s / 60);
    const r = s % 60;
    return r ? `${m} min ${r} s` : `${m} min`;
  }
  const minutes = Math.ceil(s / 60); // an hour or more: to the minute, rounded up
  const h = Math.floor(minutes / 60);
  const m = minutes % 60;
  return m ? `${h} h ${m} min` : `${h} h`;
}
