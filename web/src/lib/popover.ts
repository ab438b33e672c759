// A panel that opens from a button (the account menu, the class-code panel): Escape closes it, and so does a
// press outside both the panel and its opener.

/** A keydown handler for the panel: Escape closes it (and goes no further). */
export function escapeCloses(close: () => void): (e: KeyboardEvent) => void {
  return (e) => {
    if (e.key === 'Escape') {
      e.stopPropagation();
      close();
    }
  };
}

/** Calls `close` on a pointer press outside every element `inside()` names; returns the function that stops it
 * (an `$effect`'s cleanup). */
export function closeOnPointerOutside(inside: () => (Node | null | undefined)[], close: () => void): () => void {
  const outside = (e: PointerEvent) => {
    const t = e.target as Node;
    if (inside().every((n) => n && !n.contains(t))) close();
  };
  document.addEventListener('pointerdown', outside);
  return () => document.removeEventListener('pointerdown', outside);
}
