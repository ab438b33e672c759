// The one state object of the app ({page, values}), kept in the URL: every control calls `set`, which
// validates the value against the page's schema and rewrites the URL (replaceState); `go` changes page
// (pushState); the back button re-reads the URL.
import { PAGES, type PageId } from './lib/pages';
import { coerce, formatUrl, parseUrl, type AppState, type Value, type Values } from './lib/state';

export const app: AppState<PageId> = $state(parseUrl(PAGES, location.search));

/** Writes the state into the URL; `hash` replaces the URL's `#anchor` ("" drops it), by default it is kept. */
function writeUrl(push: boolean, hash: string = location.hash) {
  const url = formatUrl(PAGES, app) + hash;
  if (url === location.search + location.hash) return;
  if (push) history.pushState(null, '', url);
  else history.replaceState(null, '', url);
}

/** Sets some of the current page's values (unknown keys are ignored, values are validated). */
export function set(patch: Values): void {
  const schema = PAGES[app.page] as Record<string, import('./lib/state').Field>;
  for (const [k, v] of Object.entries(patch)) {
    const f = schema[k];
    if (!f) continue;
    app.values[k] = coerce(f, v as Value);
  }
  writeUrl(false);
}

/** Opens a page, optionally with some values (the others take their defaults) and an `#anchor` (a section of
 * the page's lesson; any other anchor the URL had is dropped). */
export function go(page: PageId, values: Values = {}, hash = ''): void {
  const next = parseUrl(PAGES, `?page=${page}`);
  const schema = PAGES[page] as Record<string, import('./lib/state').Field>;
  for (const [k, v] of Object.entries(values)) if (schema[k]) next.values[k] = coerce(schema[k], v);
  app.page = next.page;
  app.values = next.values;
  writeUrl(true, hash);
  window.scrollTo(0, 0);
}

/** Opens the state a query string names (`?page=layernorm&x=0.1,2.3,-1.2`: a citation's or a lesson link's), as
 * a shared URL would (unreadable values take their defaults), with an `#anchor`. */
export function openState(search: string, hash = ''): void {
  const next = parseUrl(PAGES, search);
  app.page = next.page;
  app.values = next.values;
  writeUrl(true, hash);
  window.scrollTo(0, 0);
}

// The URL as the app writes it: unreadable values replaced, defaults left out.
writeUrl(false);

addEventListener('popstate', () => {
  const next = parseUrl(PAGES, location.search);
  app.page = next.page;
  app.values = next.values;
});
