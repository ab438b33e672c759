// The LayerNorm page's editable tokens: which cells hold no number, the cell an engine refusal names, and how
// to say what is wrong with a cell.

export interface Cell {
  row: number;
  col: number;
}

/** The cells of `x` that hold no number (null), row by row. */
export function blankCells(x: ReadonlyArray<ReadonlyArray<number | null>>): Cell[] {
  const out: Cell[] = [];
  x.forEach((r, row) => r.forEach((c, col) => (c === null || !Number.isFinite(c) ? out.push({ row, col }) : 0)));
  return out;
}

/** The cell a refusal's field names: "x[1][0]" → {row: 1, col: 0}; null for any other field. */
export function cellOfField(field: string | null | undefined): Cell | null {
  const m = field ? /^x\[(\d+)\]\[(\d+)\]$/.exec(field) : null;
  return m ? { row: Number(m[1]), col: Number(m[2]) } : null;
}

/**
 * A blank cell, said for the page: "token 1, x[0] is empty"; "token 2, x[1] (“1e400”) is not a finite number"
 * when text was typed that is not one; `typed` "" when the input held text it could not read as a number (a
 * number input hands the page no text then).
 */
export function cellWords(c: Cell, typed: string | undefined): string {
  const where = `token ${c.row + 1}, x[${c.col}]`;
  if (typed === undefined) return `${where} is empty`;
  return typed ? `${where} (“${typed}”) is not a finite number` : `${where} is not a finite number`;
}
