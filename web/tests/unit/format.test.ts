import { describe, expect, it } from 'vitest';
import { fmt, fmtPct, fmtSeconds, fmtVec, showChar } from '../../src/lib/format';

describe('fmt', () => {
  it('shows the seed example values exactly as the pages promise', () => {
    expect(fmt(Math.sqrt(2.0866666))).toBe('1.4445');
    expect(fmt(Math.sqrt(0.006666654))).toBe('0.08165');
    expect(fmt(0.39999998)).toBe('0.4');
    expect(fmt(5)).toBe('5.0');
  });
  it('keeps five significant digits and drops trailing zeros', () => {
    expect(fmt(1.4445333)).toBe('1.4445');
    expect(fmt(-0.2076795)).toBe('-0.20768');
    expect(fmt(12.238285)).toBe('12.238');
    expect(fmt(12345.6)).toBe('12346');
    expect(fmt(2.5)).toBe('2.5');
  });
  it('uses scientific notation for the very small and very large', () => {
    expect(fmt(0.0023530159669582175)).toBe('0.002353');
    expect(fmt(0.00023530159669582175)).toBe('2.353e-4');
    expect(fmt(-1.1174918e-5)).toBe('-1.1175e-5');
    expect(fmt(123456)).toBe('1.2346e+5');
    expect(fmt(1e6)).toBe('1e+6');
  });
  it('handles zero, null and non-finite values', () => {
    expect(fmt(0)).toBe('0.0');
    expect(fmt(-0)).toBe('0.0');
    expect(fmt(null)).toBe('—');
    expect(fmt(undefined)).toBe('—');
    expect(fmt(NaN)).toBe('—');
    expect(fmt(Infinity)).toBe('∞');
    expect(fmt(-Infinity)).toBe('-∞');
  });
  it('takes a number of significant digits', () => {
    expect(fmt(3.14159, 3)).toBe('3.14');
    expect(fmt(0.5234375, 4)).toBe('0.5234');
  });
});

describe('other formats', () => {
  it('percentages, vectors, seconds, characters', () => {
    expect(fmtPct(0.5234375)).toBe('52.3%');
    expect(fmtPct(null)).toBe('—');
    expect(fmtVec([0.1, 2.3, -1.2])).toBe('[0.1, 2.3, -1.2]');
    expect(fmtSeconds(0.84)).toBe('0.8 s');
    expect(fmtSeconds(12.4)).toBe('12 s');
    expect(fmtSeconds(185)).toBe('3 min 5 s');
    expect(fmtSeconds(null)).toBe('—');
    expect(showChar(' ')).toBe('␣');
    expect(showChar('\n')).toBe('⏎');
    expect(showChar('a')).toBe('a');
  });
});
