// The page state is one object, serialised to and from the URL's query string (shareable): `?page=ffn&pos=3`.
// Each page declares its fields (kind, default, bounds); a value equal to its default is left out of the URL,
// and anything unreadable in a URL falls back to the default (numbers are clamped), so any URL opens a page.

export type Field =
  | { kind: 'int'; def: number; min: number; max: number }
  | { kind: 'num'; def: number; min: number; max: number }
  | { kind: 'enum'; def: string; values: readonly string[] }
  | { kind: 'bool'; def: boolean }
  | { kind: 'str'; def: string; maxLen: number }
  | { kind: 'matrix'; def: number[][]; maxRows: number; maxCols: number; blanks?: boolean };

export type Schema = Record<string, Field>;
/** A matrix cell is null when it is blank (a field with `blanks`: an emptied cell, kept as it is shown). */
export type Value = number | string | boolean | (number | null)[][];
export type Values = Record<string, Value>;

export function defaults(schema: Schema): Values {
  const out: Values = {};
  for (const [k, f] of Object.entries(schema)) out[k] = f.kind === 'matrix' ? f.def.map((r) => [...r]) : f.def;
  return out;
}

const clamp = (v: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, v));

/** Reads one field from its URL text; null when the text is unusable (the caller takes the default). */
export function parseField(f: Field, text: string): Value | null {
  switch (f.kind) {
    case 'int': {
      if (!/^-?\d+$/.test(text.trim())) return null;
      return clamp(parseInt(text, 10), f.min, f.max);
    }
    case 'num': {
      const v = Number(text);
      if (text.trim() === '' || !Number.isFinite(v)) return null;
      return clamp(v, f.min, f.max);
    }
    case 'enum':
      return f.values.includes(text) ? text : null;
    case 'bool':
      return text === '1' || text === 'true' ? true : text === '0' || text === 'false' ? false : null;
    case 'str':
      return text.slice(0, f.maxLen);
    case 'matrix':
      return parseMatrix(text, f.maxRows, f.maxCols, f.blanks);
  }
}

export function formatField(f: Field, v: Value): string {
  switch (f.kind) {
    case 'bool':
      return v ? '1' : '0';
    case 'matrix':
      return formatMatrix(v as (number | null)[][]);
    default:
      return String(v);
  }
}

export function isDefault(f: Field, v: Value): boolean {
  if (f.kind === 'matrix') return formatMatrix(v as (number | null)[][]) === formatMatrix(f.def);
  return v === f.def;
}

/**
 * "0.1,2.3,-1.2;5,5.1,4.9" → [[0.1, 2.3, -1.2], [5, 5.1, 4.9]]; rows of one width, finite numbers only — or, with
 * `blanks`, an empty cell as null ("0.1,,-1.2": a cell emptied on the page, which the page marks and does not
 * compute).
 */
export function parseMatrix(text: string, maxRows: number, maxCols: number, blanks?: false): number[][] | null;
export function parseMatrix(text: string, maxRows: number, maxCols: number, blanks?: boolean): (number | null)[][] | null;
export function parseMatrix(text: string, maxRows: number, maxCols: number, blanks = false): (number | null)[][] | null {
  const rows = text.split(';').map((r) => r.split(',').map((c) => (c.trim() === '' ? (blanks ? null : NaN) : Number(c))));
  if (rows.length === 0 || rows.length > maxRows) return null;
  const width = rows[0].length;
  if (width === 0 || width > maxCols) return null;
  if (rows.some((r) => r.length !== width || r.some((c) => c !== null && !Number.isFinite(c)))) return null;
  return rows;
}

/** A matrix for the URL: cells joined by ",", rows by ";", a blank cell (null) as nothing. */
export function formatMatrix(m: (number | null)[][]): string {
  return m.map((r) => r.map((c) => (c === null ? '' : String(c))).join(',')).join(';');
}

/** Reads a page's values from a query string; unknown keys are ignored. */
export function parseValues(schema: Schema, search: URLSearchParams): Values {
  const out = defaults(schema);
  for (const [k, f] of Object.entries(schema)) {
    const text = search.get(k);
    if (text === null) continue;
    const v = parseField(f, text);
    if (v !== null) out[k] = v;
  }
  return out;
}

/** Writes a page's values as a query string, page first, defaults left out. */
export function formatValues(page: string, schema: Schema, values: Values): string {
  const p = new URLSearchParams();
  p.set('page', page);
  for (const [k, f] of Object.entries(schema)) {
    const v = values[k];
    if (v === undefined || isDefault(f, v)) continue;
    p.set(k, formatField(f, v));
  }
  return '?' + p.toString();
}

/** Validates a value about to go into the state (from a control): clamped, or the default if unusable. */
export function coerce(f: Field, v: Value): Value {
  switch (f.kind) {
    case 'int':
      return typeof v === 'number' && Number.isFinite(v) ? clamp(Math.round(v), f.min, f.max) : f.def;
    case 'num':
      return typeof v === 'number' && Number.isFinite(v) ? clamp(v, f.min, f.max) : f.def;
    case 'enum':
      return typeof v === 'string' && f.values.includes(v) ? v : f.def;
    case 'bool':
      return typeof v === 'boolean' ? v : f.def;
    case 'str':
      return typeof v === 'string' ? v.slice(0, f.maxLen) : f.def;
    case 'matrix':
      return Array.isArray(v) && parseMatrix(formatMatrix(v as (number | null)[][]), f.maxRows, f.maxCols, f.blanks) !== null
        ? (v as (number | null)[][]).map((r) => [...r])
        : f.def.map((r) => [...r]);
  }
}

export interface AppState<P extends string = string> {
  page: P;
  values: Values;
}

/** The whole URL ⇄ state mapping for a set of pages: `?page=…` picks the schema, unknown pages the first. */
export function parseUrl<P extends string>(pages: Record<P, Schema>, search: string): AppState<P> {
  const params = new URLSearchParams(search);
  const names = Object.keys(pages) as P[];
  const asked = params.get('page') as P | null;
  const page = asked !== null && names.includes(asked) ? asked : names[0];
  return { page, values: parseValues(pages[page], params) };
}

export function formatUrl<P extends string>(pages: Record<P, Schema>, state: AppState<P>): string {
  return formatValues(state.page, pages[state.page], state.values);
}
