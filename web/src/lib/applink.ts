// Links inside the app: a lesson's `[text](?page=…)`, an assistant citation's `/?page=layernorm&x=…#step-by-step`.
// Only this origin's `/` with a known `?page=` is one; its `#anchor` must be a section id.
import { PAGES } from './pages';

export interface AppTarget {
  page: string;
  /** the query string, `?page=…&…` */
  search: string;
  /** the section id the `#anchor` names, or "" */
  anchor: string;
}

export const ANCHOR_RE = /^[a-z0-9-]+$/;

/** The app state and section a URL names, or null when it is not a link inside the app. */
export function appTarget(url: string, origin = 'http://app.invalid'): AppTarget | null {
  let u: URL;
  try {
    u = new URL(url, origin + '/');
  } catch {
    return null;
  }
  if (u.origin !== new URL(origin).origin || (u.pathname !== '/' && u.pathname !== '/index.html')) return null;
  const page = u.searchParams.get('page');
  if (page === null || !Object.hasOwn(PAGES, page)) return null;
  const anchor = decodeURIComponent(u.hash.slice(1));
  if (anchor !== '' && !ANCHOR_RE.test(anchor)) return null;
  return { page, search: u.search, anchor };
}
