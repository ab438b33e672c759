// Timers and the clock, injectable: the comment poll and the countdowns run on these, and the unit tests swap
// them (or use vitest's fake timers, which replace both).

export interface Timers {
  setTimeout(f: () => void, ms: number): unknown;
  clearTimeout(id: unknown): void;
}

export const realTimers: Timers = {
  setTimeout: (f, ms) => globalThis.setTimeout(f, ms),
  clearTimeout: (id) => globalThis.clearTimeout(id as ReturnType<typeof setTimeout>),
};
