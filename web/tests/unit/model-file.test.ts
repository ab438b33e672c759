import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseSafetensors } from '../../src/lib/safetensors';
import { dffChoices, ffnWeights, pruneFfn } from '../../src/lib/ffn';

/** A safetensors file in memory. */
function makeFile(tensors: Record<string, { shape: number[]; data: number[] }>, pad = 0): ArrayBuffer {
  const header: Record<string, unknown> = { __metadata__: { k: 'v' } };
  let off = 0;
  for (const [name, t] of Object.entries(tensors)) {
    header[name] = { dtype: 'F32', shape: t.shape, data_offsets: [off, off + 4 * t.data.length] };
    off += 4 * t.data.length;
  }
  const json = new TextEncoder().encode(JSON.stringify(header) + ' '.repeat(pad));
  const buf = new ArrayBuffer(8 + json.length + off);
  new DataView(buf).setBigUint64(0, BigInt(json.length), true);
  new Uint8Array(buf, 8, json.length).set(json);
  let at = 8 + json.length;
  for (const t of Object.values(tensors)) {
    const dv = new DataView(buf, at, 4 * t.data.length);
    t.data.forEach((v, i) => dv.setFloat32(4 * i, v, true));
    at += 4 * t.data.length;
  }
  return buf;
}

describe('safetensors', () => {
  it('reads F32 tensors and the metadata, aligned or not', () => {
    for (const pad of [0, 1, 2, 3]) {
      const f = parseSafetensors(makeFile({ a: { shape: [2, 2], data: [1, 2, 3, 0.5] }, b: { shape: [1], data: [-7] } }, pad));
      expect(f.metadata).toEqual({ k: 'v' });
      expect(Array.from(f.tensors.get('a')!.data)).toEqual([1, 2, 3, 0.5]);
      expect(f.tensors.get('a')!.shape).toEqual([2, 2]);
      expect(Array.from(f.tensors.get('b')!.data)).toEqual([-7]);
    }
  });
  it('refuses a file whose lengths do not add up', () => {
    expect(() => parseSafetensors(new ArrayBuffer(4))).toThrow(/at least 8/);
    const buf = makeFile({ a: { shape: [2], data: [1, 2] } });
    expect(() => parseSafetensors(buf.slice(0, buf.byteLength - 4))).toThrow(/offsets/);
    const bad = new ArrayBuffer(16);
    new DataView(bad).setBigUint64(0, 100n, true);
    expect(() => parseSafetensors(bad)).toThrow(/does not fit/);
  });
  it('reads the built-in model the FFN page uses', () => {
    const file = path.resolve(__dirname, '../../../models/chars-small.safetensors');
    const buf = readFileSync(file);
    const f = parseSafetensors(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
    expect(f.tensors.get('layers.0.linear1.weight')!.shape).toEqual([128, 64]);
    const w = ffnWeights(f, 1, 64, 128, 32);
    expect(w.w1).toHaveLength(32);
    expect(w.w1[0]).toHaveLength(64);
    expect(w.w2).toHaveLength(64);
    expect(w.w2[0]).toHaveLength(32);
    expect(w.b1).toHaveLength(32);
    expect(w.b2).toHaveLength(64);
    expect(() => ffnWeights(f, 0, 64, 128, 0)).toThrow(/d_ff/);
    expect(() => ffnWeights(f, 5, 64, 128, 8)).toThrow(/no tensor/);
  });
});

describe('FFN width', () => {
  it('keeps the first units: rows of W1, entries of b1, columns of W2', () => {
    // d = 2, F = 3: W1 [3,2], W2 [2,3]
    const w = pruneFfn({ w1: [1, 2, 3, 4, 5, 6], b1: [7, 8, 9], w2: [10, 11, 12, 13, 14, 15], b2: [16, 17] }, 2, 3, 2);
    expect(w).toEqual({
      w1: [
        [1, 2],
        [3, 4],
      ],
      b1: [7, 8],
      w2: [
        [10, 11],
        [13, 14],
      ],
      b2: [16, 17],
    });
  });
  it('offers halvings down to d_model / 4', () => {
    expect(dffChoices(128, 64)).toEqual([128, 64, 32, 16]);
    expect(dffChoices(8, 4)).toEqual([8, 4, 2, 1]);
  });
});
