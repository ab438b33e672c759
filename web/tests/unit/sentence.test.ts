// The sentence the model reads: characters outside its alphabet, and the one the engine's refusal names.
import { describe, expect, it } from 'vitest';
import { ApiRefusal } from '../../src/lib/api';
import { describeOutside, markedChars, outsideAlphabet, outsideWords, refusedChar } from '../../src/lib/sentence';

const ALPHABET = "\n !',-.:;?ABCDFGHILMNORSTWYabcdefghijklmnopqrstuvwxy";

describe('a sentence and the model’s alphabet', () => {
  it('finds the characters the alphabet lacks, by character position (not byte)', () => {
    expect(outsideAlphabet('Four score', ALPHABET)).toEqual([]);
    expect(outsideAlphabet('héllo Zoë', ALPHABET)).toEqual([
      { pos: 1, char: 'é' },
      { pos: 6, char: 'Z' },
      { pos: 8, char: 'ë' },
    ]);
    expect(outsideAlphabet('a😀b\t', ALPHABET)).toEqual([
      { pos: 1, char: '😀' },
      { pos: 3, char: '\t' },
    ]);
    expect(outsideAlphabet('anything', null)).toEqual([]);
  });

  it('says them, with the code point of a non-ASCII or invisible character', () => {
    expect(describeOutside({ pos: 20, char: 'é' })).toBe('“é” (position 20, U+00E9)');
    expect(describeOutside({ pos: 0, char: 'Z' })).toBe('“Z” (position 0)');
    expect(describeOutside({ pos: 2, char: '\t' })).toBe('a control character U+0009 (position 2)');
    expect(describeOutside({ pos: 1, char: '😀' })).toBe('“😀” (position 1, U+1F600)');
    const many = outsideWords(Array.from({ length: 10 }, (_, pos) => ({ pos, char: 'Z' })));
    expect(many).toMatch(/^Not in the model's alphabet: “Z” \(position 0\), .* and 2 more\. /);
    expect(outsideWords([])).toBe('');
    // without the alphabet on the page, no pointer to it
    expect(outsideWords([{ pos: 1, char: 'é' }], false)).toBe("Not in the model's alphabet: “é” (position 1, U+00E9).");
  });

  it('finds the character a refusal names, only in the sentence it refused', () => {
    const e = new ApiRefusal(400, 'bad_request', 'text[1]: expected a character of the model\'s alphabet, got "é"', 'text[1]');
    expect(refusedChar(e, 'héllo', 'héllo')).toEqual({ pos: 1, char: 'é' });
    expect(refusedChar(e, 'héllo', 'éllo'), 'a refusal of the sentence before the edit').toBeNull();
    expect(refusedChar(e, 'h', 'h'), 'a position past the end').toBeNull();
    expect(refusedChar(new ApiRefusal(400, 'bad_request', 'track: …', 'track'), 'abc', 'abc')).toBeNull();
    expect(refusedChar(null, 'abc', 'abc')).toBeNull();
    const emoji = new ApiRefusal(400, 'bad_request', 'text[2]: …', 'text[2]');
    expect(refusedChar(emoji, 'a😀😀', 'a😀😀')).toEqual({ pos: 2, char: '😀' });
  });

  it('marks the characters outside the alphabet and the refused one, each once, in order', () => {
    expect(markedChars('héllo Z', null, { pos: 1, char: 'é' })).toEqual([{ pos: 1, char: 'é' }]);
    expect(markedChars('Zé', ALPHABET, { pos: 0, char: 'Z' })).toEqual([
      { pos: 0, char: 'Z' },
      { pos: 1, char: 'é' },
    ]);
    expect(markedChars('abZ', ALPHABET)).toEqual([{ pos: 2, char: 'Z' }]);
    expect(markedChars('abc', null)).toEqual([]);
  });
});
