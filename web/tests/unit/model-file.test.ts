import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseSafetensors } from '../../src/lib/safetensors';
import { barRowHeight, describeWeights, dffChoices, ffnWeightSource, MAX_DFF, strongestPushes } from '../../src/lib/ffn';
import { lnTraceNames } from '../../src/lib/pages';

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
  it('reads the built-in model (the Train test reads exported checkpoints the same way)', () => {
    const file = path.resolve(__dirname, '../../../models/chars-small.safetensors');
    const buf = readFileSync(file);
    const f = parseSafetensors(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
    expect(f.tensors.get('layers.0.linear1.weight')!.shape).toEqual([128, 64]);
    expect(f.tensors.get('layers.1.linear2.weight')!.shape).toEqual([64, 128]);
  });
});

describe('FFN width', () => {
  it('offers multiples of d_model around the model’s d_ff, and any width a URL asks for', () => {
    expect(dffChoices(128, 64)).toEqual([16, 32, 64, 128, 256, 512, 1024]);
    expect(dffChoices(128, 64, 100)).toEqual([16, 32, 64, 100, 128, 256, 512, 1024]);
    expect(dffChoices(128, 64, 256)).toEqual([16, 32, 64, 128, 256, 512, 1024]);
    expect(dffChoices(128, 64, 0)).toEqual([16, 32, 64, 128, 256, 512, 1024]);
    expect(dffChoices(128, 64, MAX_DFF + 1)).not.toContain(MAX_DFF + 1);
    expect(dffChoices(8, 2)).toEqual([1, 2, 4, 8, 16, 32]); // 0.5 is not a width
    expect(dffChoices(3000, 1024)).toEqual([256, 512, 1024, 2048, 3000, 4096]);
  });
  it('uses the model’s trained layer at its own width, fresh weights (init) at any other', () => {
    expect(ffnWeightSource('chars-small', 128, 1, 128, 7)).toEqual({ model: 'chars-small', layer: 1 });
    expect(ffnWeightSource('chars-small', 128, 1, 256, 7)).toEqual({ init: { d_ff: 256, seed: 7 } });
    expect(ffnWeightSource('chars-small', 128, 0, 32, 0)).toEqual({ init: { d_ff: 32, seed: 0 } });
  });
  it('says which weights an answer was computed with', () => {
    expect(describeWeights({ model: 'chars-small', layer: 1 }, 128)).toBe('chars-small\'s trained FFN of layer 1 (d_ff = 128)');
    const fresh = describeWeights({ init: { d_ff: 256, seed: 3 } }, 256);
    expect(fresh).toContain('fresh, untrained');
    expect(fresh).toContain('d_ff = 256');
    expect(fresh).toContain('seed 3');
    expect(fresh).toContain('nn.Linear');
    expect(describeWeights('given', 4)).toBe('explicit weights (d_ff = 4)');
  });
  it('keeps wide FFNs’ bars about a screen tall', () => {
    expect([16, 64, 128, 256, 512, 1024].map(barRowHeight)).toEqual([8, 8, 4, 2, 1, 1]);
  });
  it('names what the layer refines: the output features pushed most, either way', () => {
    expect(strongestPushes([0.1, -0.9, 0.5, null, 0.9, 0], 3)).toEqual([
      { feature: 1, value: -0.9 },
      { feature: 4, value: 0.9 },
      { feature: 2, value: 0.5 },
    ]);
    expect(strongestPushes([0, null], 3)).toEqual([]);
  });
});

describe('trace selection', () => {
  it('the Other-half LayerNorm view asks for the stream before the norm and the norm’s output', () => {
    expect(lnTraceNames(0, 'attn')).toEqual({ before: 'blocks.0.hook_resid_pre', after: 'blocks.0.ln1.hook_out' });
    expect(lnTraceNames(1, 'ffn')).toEqual({ before: 'blocks.1.hook_resid_mid', after: 'blocks.1.ln2.hook_out' });
  });
});
