// A sentence the model reads: which of its characters the model's alphabet (GET /api/models) lacks, and the one
// the engine's refusal names (its `field`, `text[i]`, counted in characters; its message quotes the character as
// typed, `got "é"`).
import type { ApiRefusal } from './api';

export interface OutsideChar {
  /** the position in the sentence, counted in characters (code points) as the token picker counts them */
  pos: number;
  char: string;
}

/** The characters of `text` not in `alphabet`, in order (none when the alphabet is not known yet). */
export function outsideAlphabet(text: string, alphabet: string | null | undefined): OutsideChar[] {
  if (!alphabet) return [];
  const known = new Set([...alphabet]);
  const out: OutsideChar[] = [];
  [...text].forEach((char, pos) => {
    if (!known.has(char)) out.push({ pos, char });
  });
  return out;
}

/**
 * The character a refusal names (`text[i]`, counted in characters) in `text`, the sentence typed now, or null: no
 * refusal, another field, or a refusal of another sentence (`asked`, the text of the request it refused).
 */
export function refusedChar(e: ApiRefusal | null | undefined, asked: string | null | undefined, text: string): OutsideChar | null {
  const m = e && asked === text ? /^text\[(\d+)\]$/.exec(e.field ?? '') : null;
  if (!m) return null;
  const pos = Number(m[1]);
  const char = [...text][pos];
  return char === undefined ? null : { pos, char };
}

/**
 * The characters to mark on the input: those the alphabet lacks and the one the engine refused (which is marked
 * even when the alphabet is not known, e.g. GET /api/models failed), in order, each once.
 */
export function markedChars(text: string, alphabet: string | null | undefined, refused: OutsideChar | null = null): OutsideChar[] {
  const out = outsideAlphabet(text, alphabet);
  if (refused && !out.some((o) => o.pos === refused.pos)) {
    out.push(refused);
    out.sort((a, b) => a.pos - b.pos);
  }
  return out;
}

/** One character outside the alphabet, for the line under the input: “é” (position 20, U+00E9). */
export function describeOutside({ pos, char }: OutsideChar): string {
  const cp = char.codePointAt(0) ?? 0;
  const hex = 'U+' + cp.toString(16).toUpperCase().padStart(4, '0');
  if (char === ' ') return `a space (position ${pos})`;
  if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0)) return `a control character ${hex} (position ${pos})`;
  return cp < 0x80 ? `“${char}” (position ${pos})` : `“${char}” (position ${pos}, ${hex})`;
}

/**
 * The line under the input: every character the model cannot read (the first 8, then how many more); with the
 * alphabet listed above it (`alphabetShown`), a pointer to it.
 */
export function outsideWords(list: readonly OutsideChar[], alphabetShown = true): string {
  if (!list.length) return '';
  const shown = list.slice(0, 8).map(describeOutside).join(', ');
  const more = list.length > 8 ? ` and ${list.length - 8} more` : '';
  return `Not in the model's alphabet: ${shown}${more}.${alphabetShown ? ' The model can read only the characters listed above.' : ''}`;
}
