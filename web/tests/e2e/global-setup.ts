// Starts `blocklab serve` on a free port (--port 0) with a scratch run store, serving the built app (web/dist)
// and the API on one origin; the tests get its address with inject('baseUrl'). Before it starts, a teacher
// account is made in that store with `blocklab users add` (inject('teacher'): its name and password). SIGTERM at
// the end.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestProject } from 'vitest/node';
import { CHROMIUM } from './browser';

declare module 'vitest' {
  export interface ProvidedContext {
    baseUrl: string;
    teacher: { name: string; password: string };
  }
}

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

export default async function setup(project: TestProject) {
  const binary = process.env.BLOCKLAB_BINARY ?? path.join(repo, 'build', 'blocklab');
  const dist = path.join(repo, 'web', 'dist');
  if (!existsSync(binary)) throw new Error(`${binary}: no blocklab binary (build it with scripts/build.sh, or set BLOCKLAB_BINARY)`);
  if (!existsSync(path.join(dist, 'index.html'))) throw new Error(`${dist}/index.html: the app is not built (scripts/web.sh build)`);
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM}: no chromium (scripts/setup.sh installs Debian's chromium)`);

  const work = mkdtempSync(path.join(os.tmpdir(), 'blocklab-web-test-'));
  const db = path.join(work, 'test.db');
  const teacher = { name: 'teach', password: 'teacher-pass-' + Math.random().toString(36).slice(2, 10) };
  const pwFile = path.join(work, 'teacher.pw');
  writeFileSync(pwFile, teacher.password + '\n', { mode: 0o600 });
  execFileSync(binary, ['users', 'add', teacher.name, '--role', 'teacher', '--password-file', pwFile, '--db', db], { cwd: work, stdio: ['ignore', 'ignore', 'pipe'] });
  const server: ChildProcess = spawn(
    binary,
    ['serve', '--port', '0', '--models', path.join(repo, 'models'), '--web', dist, '--db', db, '--quiet'],
    { cwd: work, stdio: ['ignore', 'ignore', 'pipe'] },
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
  console.log(`e2e: ${binary} serving ${dist} at ${baseUrl}`);
  project.provide('baseUrl', baseUrl);
  project.provide('teacher', teacher);

  return async () => {
    if (server.exitCode === null) {
      const exited = new Promise<void>((r) => server.once('exit', () => r()));
      server.kill('SIGTERM');
      const timeout = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 10_000));
      if ((await Promise.race([exited, timeout])) === 'timeout') server.kill('SIGKILL');
    }
    rmSync(work, { recursive: true, force: true });
  };
}
