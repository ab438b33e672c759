// Vector measures of the engine's numbers, taken in the browser (float64): the lengths and angles the pages say
// in words. The vectors themselves are always the API's.

/** The Euclidean length √(Σᵢ vᵢ²); nulls (non-finite values in the API's answer) are skipped. */
export function norm(v: ReadonlyArray<number | null>): number {
  let s = 0;
  for (const x of v) if (x !== null) s += x * x;
  return Math.sqrt(s);
}

/** cos(a, b) = a·b / (‖a‖‖b‖); null when either is all zero, or the lengths differ. */
export function cosine(a: ReadonlyArray<number | null>, b: ReadonlyArray<number | null>): number | null {
  if (a.length !== b.length) return null;
  let dot = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== null && b[i] !== null) dot += a[i]! * b[i]!;
  const n = norm(a) * norm(b);
  return n > 0 ? dot / n : null;
}
