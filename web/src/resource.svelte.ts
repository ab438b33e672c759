// A request whose answer a view draws: `request(args)` (from an $effect over the page state) sends it debounced,
// the newest only, aborting the one in flight (lib/latest.ts). `status` drives the widget's busy state and the
// tests' wait (data-status on the widget). A view never shows numbers of another request than the one it asked
// last: a refusal drops the previous answer (the error is shown instead), and so does a request of nothing (an
// empty sentence, an invalid cell), which also clears the error — its cause is gone.
import { ApiRefusal, describeError } from './lib/api';
import { latest, type Latest, type Status } from './lib/latest';

export class Resource<A, R> {
  data: R | null = $state.raw(null);
  /** the request that produced `data` */
  args: A | null = $state.raw(null);
  error: string | null = $state(null);
  /** the refusal behind `error`, when the engine refused (its `field` names the input at fault) */
  refusal: ApiRefusal | null = $state.raw(null);
  /** the request that `error` refused (the state may already be ahead of it) */
  errorArgs: A | null = $state.raw(null);
  status: Status = $state('idle');
  private runner: Latest<A>;
  private key = '';
  private pendingArgs: A | null = null;

  constructor(fn: (args: A, signal: AbortSignal) => Promise<R>, delayMs = 120) {
    this.runner = latest<A, R>((a, s) => fn(a, s), {
      delayMs,
      onStatus: (s) => (this.status = s),
      onResult: (r) => {
        this.data = r;
        this.args = this.pendingArgs;
        this.error = null;
        this.refusal = null;
        this.errorArgs = null;
      },
      onError: (e) => {
        this.data = null;
        this.args = null;
        this.error = describeError(e);
        this.refusal = e instanceof ApiRefusal ? e : null;
        this.errorArgs = this.pendingArgs;
      },
    });
  }

  /** Asks for `args` (null: nothing to ask — the answer and any error are dropped). The same args as last time send nothing. */
  request(args: A | null, immediate = false): void {
    const key = args === null ? '' : JSON.stringify(args);
    if (key === this.key) return;
    this.key = key;
    if (args === null) {
      this.runner.cancel();
      this.status = 'idle';
      this.data = null;
      this.args = null;
      this.error = null;
      this.refusal = null;
      this.errorArgs = null;
      this.pendingArgs = null;
      return;
    }
    this.pendingArgs = args;
    this.runner.schedule(args, immediate || (this.data === null && this.error === null));
  }

  /** Sends the current request again (a retry button). */
  retry(): void {
    if (this.pendingArgs !== null) this.runner.schedule(this.pendingArgs, true);
  }

  cancel(): void {
    this.runner.cancel();
  }

  get stats() {
    return this.runner.stats;
  }
}
