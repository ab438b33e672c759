// The two readers of lessons/*.md agree: this app's (web/plugins/lessons.ts) and the engine's, compiled into the
// binary for the learning assistant (src/assistant/lessons.cpp; `blocklab assistant sections --json` prints what it
// parsed). Every page, every field, deep equality. The binary is BLOCKLAB_BINARY, else build/blocklab; without one
// this test fails (it is never skipped): build the engine first.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readLessons, type LessonPage } from '../../plugins/lessons';

const repo = path.resolve(__dirname, '../../..');
const binary = path.resolve(repo, 'web', process.env.BLOCKLAB_BINARY ?? '../build/blocklab');

describe('lessons: the engine reads them as the app does', () => {
  it('`blocklab assistant sections --json` equals the web parser on every file', () => {
    if (!existsSync(binary))
      throw new Error(`${binary}: no blocklab binary to compare the lessons with (build it with scripts/build.sh, or set BLOCKLAB_BINARY)`);
    let out: string;
    try {
      out = execFileSync(binary, ['assistant', 'sections', '--json'], { cwd: repo, encoding: 'utf8', maxBuffer: 64 << 20, stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (e) {
      const err = e as { status?: number; stderr?: string };
      throw new Error(`${binary} assistant sections --json failed (exit ${err.status}): ${err.stderr?.trim() ?? e}`);
    }
    const engine = JSON.parse(out) as { pages: LessonPage[] };
    const web = readLessons(repo);
    expect(engine.pages.map((p) => p.page).sort()).toEqual(Object.keys(web).sort());
    for (const p of engine.pages) expect(p, `lessons/${p.page}.md`).toEqual(web[p.page]);
  });
});
