// The cheat sheet's table (lessons/cheatsheet.md, pages/CheatSheet.svelte): each `summary` section of the lesson is
// one row, its text one list of the four cells in this order, each cell starting with its column's name in bold
// ("- **Computes:** $x + f(x)$ …"); the last cell links to the widgets that show the row. The page lays the
// sections out as a table; this says what a row must be.
import { blocks } from './lesson-render';
import type { LessonSection } from './lessons';

/** The columns after the row's name (its section title), as the rows' bold labels write them. */
export const CHEAT_COLUMNS = ['Computes', 'For', 'Key property', 'See it'] as const;

/** The app links of a cell: `[text](?page=…)`. */
export function cellLinks(cell: string): { text: string; href: string }[] {
  return [...cell.matchAll(/\[([^\]\n]+)\]\((\?page=[^)\s]+)\)/g)].map((m) => ({ text: m[1], href: m[2] }));
}

/** A row's cells (the text after each label), or what is wrong with the section as a row. */
export function cheatRow(s: Pick<LessonSection, 'id' | 'body'>): { cells: string[] } | { problem: string } {
  const bs = blocks(s.body);
  const list = bs[0];
  if (bs.length !== 1 || list.kind !== 'ul')
    return { problem: `#${s.id}: expected one list of ${CHEAT_COLUMNS.length} cells and nothing else, got ${bs.map((b) => b.kind).join(', ') || 'nothing'}` };
  const items = list.items;
  if (items.length !== CHEAT_COLUMNS.length) return { problem: `#${s.id}: expected ${CHEAT_COLUMNS.length} cells (${CHEAT_COLUMNS.join(', ')}), got ${items.length}` };
  const cells: string[] = [];
  for (let k = 0; k < items.length; k++) {
    const label = `**${CHEAT_COLUMNS[k]}:** `;
    if (!items[k].startsWith(label)) return { problem: `#${s.id}: cell ${k + 1} must start with "${label}", got "${items[k].slice(0, 30)}"` };
    const text = items[k].slice(label.length).trim();
    if (!text) return { problem: `#${s.id}: cell "${CHEAT_COLUMNS[k]}" is empty` };
    cells.push(text);
  }
  if (cellLinks(cells[cells.length - 1]).length === 0) return { problem: `#${s.id}: "See it" links to no widget (write [text](?page=…))` };
  return { cells };
}
