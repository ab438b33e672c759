// Who is signed in (contract section 5): the user (name, role) and the session's CSRF token, asked of
// GET /api/auth/me at start. The session itself is the HttpOnly cookie `blocklab_session`, which the page never
// sees; the CSRF token lives only here, and lib/api.ts's `send` reads it from here for every state change.
// A sign-in the server throttles (429 too_many_attempts with Retry-After) starts `signInWait`, a countdown for
// that account name; teachers make class codes here too.
import { ApiRefusal, getJson, postJson, send, refusalOf, setCsrfSource, type AuthAnswer, type ClassCode, type User } from './lib/api';
import { Countdown } from './countdown.svelte';
import { realTimers, type Timers } from './lib/timers';

export type Registration = 'open' | 'code' | 'closed' | 'unknown';

export class AuthStore {
  user: User | null = $state(null);
  csrf: string | null = $state(null);
  /** from GET /api/auth/me (signed in), or learnt from a 403 bad_class_code / registration_closed */
  registration: Registration = $state('unknown');
  /** me() has answered (either way) */
  ready = $state(false);
  /** the wait the server named when it throttled a sign-in (Retry-After), for the account `signInWaitName` */
  readonly signInWait: Countdown;
  /** the (lower-case) account name the wait is for: the throttle counts per account and address */
  signInWaitName: string | null = $state(null);

  constructor(timers: Timers = realTimers, now: () => number = () => Date.now()) {
    this.signInWait = new Countdown(timers, now);
  }

  /** Seconds to wait before signing in as `username` may be tried again (0: go ahead). */
  waitFor(username: string): number {
    return this.signInWait.active && this.signInWaitName === username.trim().toLowerCase() ? this.signInWait.left : 0;
  }

  get signedIn(): boolean {
    return this.user !== null;
  }
  get isTeacher(): boolean {
    return this.user?.role === 'teacher';
  }

  private accept(a: AuthAnswer): User {
    this.user = { name: a.user.name, role: a.user.role };
    this.csrf = a.csrf_token;
    if (a.registration) this.registration = a.registration;
    return this.user;
  }
  private clear(): void {
    this.user = null;
    this.csrf = null;
  }

  /** Asks the server who this browser is: 200 signs in, 401 signs out; any other failure leaves it signed out.
   * Signed out, it also asks GET /api/version who may register, so that the panel asks for a class code before
   * a first refusal. */
  async me(): Promise<User | null> {
    try {
      return this.accept(await getJson<AuthAnswer>('/api/auth/me'));
    } catch (e) {
      this.clear();
      if (!(e instanceof ApiRefusal && e.status === 401)) console.warn('GET /api/auth/me:', e);
      try {
        const v = await getJson<{ registration?: Registration }>('/api/version');
        if (v.registration) this.registration = v.registration;
      } catch {
        /* the panel learns it from the first refusal instead */
      }
      return null;
    } finally {
      this.ready = true;
    }
  }

  async signIn(username: string, password: string): Promise<User> {
    // A login replaces any session: send no stale token with it.
    this.clear();
    try {
      const user = this.accept(await postJson<AuthAnswer>('/api/auth/login', { username, password }));
      this.signInWait.stop();
      this.signInWaitName = null;
      return user;
    } catch (e) {
      if (e instanceof ApiRefusal && e.status === 429 && e.retryAfter) {
        this.signInWaitName = username.trim().toLowerCase();
        this.signInWait.start(e.retryAfter, () => (this.signInWaitName = null));
      }
      throw e;
    }
  }

  async register(username: string, password: string, classCode?: string): Promise<User> {
    this.clear();
    const body: Record<string, string> = { username, password };
    if (classCode && classCode.trim()) body.class_code = classCode.trim();
    try {
      return this.accept(await postJson<AuthAnswer>('/api/auth/register', body));
    } catch (e) {
      if (e instanceof ApiRefusal && e.code === 'bad_class_code') this.registration = 'code';
      if (e instanceof ApiRefusal && e.code === 'registration_closed') this.registration = 'closed';
      throw e;
    }
  }

  /** Teachers: a new class code for `--registration code`, valid `hours` (the server shows it only this once). */
  async makeClassCode(hours: number): Promise<ClassCode> {
    return postJson<ClassCode>('/api/auth/class-codes', { hours });
  }

  /** Ends the session on the server (with the CSRF token), then here, whatever the server said. */
  async signOut(): Promise<void> {
    try {
      const res = await send('/api/auth/logout', { method: 'POST', headers: { Accept: 'application/json' } });
      if (!res.ok && res.status !== 401) throw await refusalOf(res);
    } finally {
      this.clear();
    }
  }
}

export const auth = new AuthStore();
setCsrfSource(() => auth.csrf);
