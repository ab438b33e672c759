// The lessons' text as the app reads it from `virtual:lessons` (web/plugins/lessons.ts parses lessons/<page>.md,
// docs/lessons.md says the format): one entry per page, its sections in file order.

/** How a page places and styles a section (docs/lessons.md). */
export const LESSON_KINDS = ['intuition', 'maths', 'widget', 'notice', 'misunderstanding', 'summary', 'code', 'exercise'] as const;
export type LessonKind = (typeof LESSON_KINDS)[number];

export interface LessonSection {
  /** the anchor, `[a-z0-9-]+`; the global id is `page#id` */
  id: string;
  title: string;
  /** the app state that shows what the section talks about, `page?key=value&…` ("" when the lesson names none) */
  widget: string;
  keywords: string[];
  kind: LessonKind;
  /** the Markdown subset, as written (lib/lesson-render.ts renders it) */
  body: string;
}

export interface LessonPage {
  page: string;
  title: string;
  /** suggested questions for the page's assistant panel */
  suggest: string[];
  sections: LessonSection[];
}

export type Lessons = Record<string, LessonPage>;

/** A section's id as the assistant and the comments name it: `layernorm#step-by-step`. */
export function globalId(page: string, id: string): string {
  return `${page}#${id}`;
}
