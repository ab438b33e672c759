// Starts `blocklab serve` on a free port (--port 0) with a scratch run store, serving the built app (web/dist)
// and the API on one origin; the tests get its address with inject('baseUrl'). Before it starts, a teacher
// account is made in that store with `blocklab users add` (inject('teacher'): its name and password). SIGTERM at
// the end. (server.ts does the work; registration.e2e.ts starts a second server with it.)
import { existsSync } from 'node:fs';
import type { TestProject } from 'vitest/node';
import { CHROMIUM } from './browser';
import { addUser, blocklabBinary, dist, scratch, startServer } from './server';

declare module 'vitest' {
  export interface ProvidedContext {
    baseUrl: string;
    teacher: { name: string; password: string };
  }
}

export default async function setup(project: TestProject) {
  const binary = blocklabBinary();
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM}: no chromium (scripts/setup.sh installs Debian's chromium)`);

  const work = scratch();
  const teacher = { name: 'teach', password: 'teacher-pass-' + Math.random().toString(36).slice(2, 10) };
  addUser(binary, work.dir, work.db, teacher.name, 'teacher', teacher.password);
  const server = await startServer(binary, work.dir, work.db);
  console.log(`e2e: ${binary} serving ${dist} at ${server.baseUrl}`);
  project.provide('baseUrl', server.baseUrl);
  project.provide('teacher', teacher);

  return async () => {
    await server.stop();
    work.remove();
  };
}
