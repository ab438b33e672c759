// Starting `blocklab serve` for the browser tests: the binary (build/blocklab, or BLOCKLAB_BINARY), an account
// made with `blocklab users add` before it starts, and a server on a free port (--port 0) with its own store,
// whose address is read from its first stderr line; stop() sends SIGTERM (SIGKILL after 10 s), stop('SIGKILL')
// kills it at once (a worker that dies: queue.e2e.ts). global-setup.ts starts the one every file shares; a file
// that needs other flags (registration.e2e.ts: --registration code; queue.e2e.ts: --max-jobs 1) starts its own
// with these.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const dist = path.join(repo, 'web', 'dist');

export function blocklabBinary(): string {
  const binary = process.env.BLOCKLAB_BINARY ?? path.join(repo, 'build', 'blocklab');
  if (!existsSync(binary)) throw new Error(`${binary}: no blocklab binary (build it with scripts/build.sh, or set BLOCKLAB_BINARY)`);
  return binary;
}

/** A scratch folder for one server's store; remove() deletes it. */
export function scratch(prefix = 'blocklab-web-test-'): { dir: string; db: string; remove(): void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, db: path.join(dir, 'test.db'), remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** `blocklab users add NAME --role ROLE --password-file F --db DB` (the password in a 0600 file in `dir`). */
export function addUser(binary: string, dir: string, db: string, name: string, role: 'student' | 'teacher', password: string): void {
  const pwFile = path.join(dir, `${name}.pw`);
  writeFileSync(pwFile, password + '\n', { mode: 0o600 });
  execFileSync(binary, ['users', 'add', name, '--role', role, '--password-file', pwFile, '--db', db], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

export interface Served {
  baseUrl: string;
  /** SIGTERM (the server's orderly stop; SIGKILL after 10 s), or SIGKILL at once; resolves when it has exited */
  stop(signal?: 'SIGTERM' | 'SIGKILL'): Promise<void>;
}

/** `blocklab serve --port 0 --models … --web web/dist --db DB --quiet [extra…]`, resolved once it listens. */
export async function startServer(binary: string, dir: string, db: string, extra: string[] = []): Promise<Served> {
  if (!existsSync(path.join(dist, 'index.html'))) throw new Error(`${dist}/index.html: the app is not built (scripts/web.sh build)`);
  const server: ChildProcess = spawn(
    binary,
    ['serve', '--port', '0', '--models', path.join(repo, 'models'), '--web', dist, '--db', db, '--quiet', ...extra],
    { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const baseUrl = await new Promise<string>((resolve, reject) => {
    let err = '';
    const timer = setTimeout(() => reject(new Error(`blocklab serve did not start in 20 s: ${err}`)), 20_000);
    server.stderr!.setEncoding('utf8');
    server.stderr!.on('data', (chunk: string) => {
      err += chunk;
      const m = /blocklab serve: (http:\/\/127\.0\.0\.1:\d+)\//.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    server.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`blocklab serve exited (${code}) before it listened: ${err}`));
    });
  });
  server.stderr!.resume();
  return {
    baseUrl,
    async stop(signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM') {
      if (server.exitCode !== null || server.signalCode !== null) return;
      const exited = new Promise<void>((r) => server.once('exit', () => r()));
      server.kill(signal);
      const timeout = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 10_000));
      if ((await Promise.race([exited, timeout])) === 'timeout') server.kill('SIGKILL');
    },
  };
}
