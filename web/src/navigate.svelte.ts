// Following a link inside the app (a lesson's `[text](?page=…)`, an assistant citation): the state its URL names
// becomes the app's (pushState, like the nav), and its `#anchor`, a section of the page's lesson, is scrolled into
// view and highlighted by the Lesson component that shows it (`anchor` below). A link to the page already open
// without an anchor shows the widget instead of jumping to the top. A modified click (new tab) is left to the
// browser.
import { tick } from 'svelte';
import { app, openState } from './app-state.svelte';
import { appTarget } from './lib/applink';

/** The section to show: `id` (the URL's #anchor); `seq` changes at every request, `focus` moves focus there. */
export const anchor = $state({ id: decodeURIComponent(location.hash.slice(1)), seq: 0, focus: false });

/** Opens an app URL; false (nothing done) when it is not one. `focus`: move focus to the section (a keyboard
 * user's next Tab continues from there). */
export function openAppUrl(url: string, focus = true): boolean {
  const t = appTarget(url, location.origin);
  if (!t) return false;
  const samePage = t.page === app.page;
  const y = window.scrollY;
  openState(t.search, t.anchor ? `#${t.anchor}` : '');
  anchor.id = t.anchor;
  anchor.focus = focus;
  anchor.seq++;
  if (samePage && !t.anchor) {
    window.scrollTo(0, y);
    void tick().then(() => document.querySelector('[data-testid="widget"]')?.scrollIntoView({ block: 'start' }));
  }
  return true;
}

/** A click on a link inside the app (plain left click, no modifier): handled here, not by a page load. */
export function followAppLink(e: MouseEvent): void {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const a = (e.target as Element | null)?.closest?.('a[data-app-link]');
  if (!a) return;
  if (openAppUrl(a.getAttribute('href') ?? '')) e.preventDefault();
}

/** Svelte action: the element's app links (rendered lesson or answer text) navigate inside the app. */
export function appLinks(node: HTMLElement) {
  node.addEventListener('click', followAppLink);
  return { destroy: () => node.removeEventListener('click', followAppLink) };
}

// A plain `#anchor` link, or an anchor typed into the address bar.
addEventListener('hashchange', () => {
  anchor.id = decodeURIComponent(location.hash.slice(1));
  anchor.focus = false;
  anchor.seq++;
});
