// Number formatting: one rule for every number the app shows, so a test can format the API's value the same
// way and compare it with the page's text.

/** A value as the API sends it: a number, or null for a non-finite value. */
export type ApiNumber = number | null | undefined;

/**
 * `sig` significant digits (default 5), trailing zeros dropped but one decimal kept ("5.0", "0.4",
 * "1.4445", "0.08165"); scientific notation below 1e-3 and from 1e5 on ("2.353e-3", "1.2e+6");
 * zero (and −0) is "0.0"; null / NaN is "—" (the API writes non-finite values as null).
 */
export function fmt(v: ApiNumber, sig = 5): string {
  if (v === null || v === undefined || Number.isNaN(v)) return '—';
  if (v === Infinity) return '∞';
  if (v === -Infinity) return '-∞';
  if (v === 0) return '0.0';
  const a = Math.abs(v);
  if (a < 1e-3 || a >= 1e5) {
    const [mant, exp] = v.toExponential(sig - 1).split('e');
    return `${trimZeros(mant, false)}e${exp}`;
  }
  const s = v.toPrecision(sig);
  return s.includes('.') ? trimZeros(s, true) : s;
}

function trimZeros(s: string, keepOneDecimal: boolean): string {
  if (!s.includes('.')) return s;
  let t = s.replace(/0+$/, '');
  if (t.endsWith('.')) t = keepOneDecimal ? t + '0' : t.slice(0, -1);
  return t;
}

/** A fraction as a percentage with one decimal: 0.5234 → "52.3%". */
export function fmtPct(v: ApiNumber): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return '—';
  return `${(v * 100).toFixed(1)}%`;
}

/** A vector as "[a, b, c]" with fmt. */
export function fmtVec(v: ReadonlyArray<ApiNumber>, sig = 5): string {
  return `[${v.map((x) => fmt(x, sig)).join(', ')}]`;
}

/** Seconds for a status line: "0.8 s", "12 s", "3 min 5 s". */
export function fmtSeconds(s: ApiNumber): string {
  if (s === null || s === undefined || !Number.isFinite(s) || s < 0) return '—';
  if (s < 10) return `${s.toFixed(1)} s`;
  if (s < 60) return `${Math.round(s)} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${Math.round(s - 60 * m)} s`;
}

/** A character for display: newline and space made visible. */
export function showChar(c: string): string {
  if (c === '\n') return '⏎';
  if (c === ' ') return '␣';
  return c;
}

/** Characters as the server counts them (code points, not UTF-16 units). */
export function codePointLength(text: string): number {
  let n = 0;
  for (const _ of text) n++;
  return n;
}
