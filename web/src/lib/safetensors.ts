// Reads a .safetensors file (8-byte little-endian header length, a JSON header, raw little-endian data) as
// the API sends it (GET /api/models/{id}/download). Only F32 tensors are read; every length and offset is
// checked against the file.

export interface TensorF32 {
  shape: number[];
  data: Float32Array;
}

export interface SafetensorsFile {
  metadata: Record<string, string>;
  tensors: Map<string, TensorF32>;
}

export function parseSafetensors(buf: ArrayBuffer): SafetensorsFile {
  if (buf.byteLength < 8) throw new Error(`safetensors: file of ${buf.byteLength} bytes, expected at least 8`);
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) throw new Error('safetensors: big-endian hosts are not supported');
  const view = new DataView(buf);
  const headerLen = Number(view.getBigUint64(0, true));
  if (headerLen <= 0 || 8 + headerLen > buf.byteLength)
    throw new Error(`safetensors: header length ${headerLen} does not fit the file of ${buf.byteLength} bytes`);
  const headerText = new TextDecoder().decode(new Uint8Array(buf, 8, headerLen));
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(headerText);
  } catch (e) {
    throw new Error(`safetensors: the header is not JSON (${(e as Error).message})`);
  }
  const dataStart = 8 + headerLen;
  const dataLen = buf.byteLength - dataStart;
  const tensors = new Map<string, TensorF32>();
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') {
      metadata = entry as Record<string, string>;
      continue;
    }
    const e = entry as { dtype: string; shape: number[]; data_offsets: [number, number] };
    if (e.dtype !== 'F32') continue;
    const [begin, end] = e.data_offsets;
    const count = e.shape.reduce((a, b) => a * b, 1);
    if (!(begin >= 0 && end >= begin && end <= dataLen && end - begin === 4 * count))
      throw new Error(`safetensors: tensor ${name}: offsets [${begin}, ${end}] do not match shape [${e.shape}] in ${dataLen} data bytes`);
    // Copy: the data section need not be 4-byte aligned.
    const bytes = new Uint8Array(buf, dataStart + begin, end - begin).slice();
    const data = new Float32Array(bytes.buffer);
    tensors.set(name, { shape: [...e.shape], data });
  }
  return { metadata, tensors };
}

export function tensor(file: SafetensorsFile, name: string, shape: number[]): TensorF32 {
  const t = file.tensors.get(name);
  if (!t) throw new Error(`model file: no tensor ${name}`);
  if (t.shape.length !== shape.length || t.shape.some((s, i) => s !== shape[i]))
    throw new Error(`model file: ${name} has shape [${t.shape}], expected [${shape}]`);
  return t;
}
