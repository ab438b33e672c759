// GET /api/models, once: the built-in model's config and alphabet, which every model widget names.
import { getJson, describeError, type ModelInfo } from './lib/api';

export const models: { list: ModelInfo[] | null; error: string | null } = $state({ list: null, error: null });

let started = false;
export function loadModels(): void {
  if (started) return;
  started = true;
  getJson<{ models: ModelInfo[] }>('/api/models').then(
    (r) => (models.list = r.models),
    (e) => (models.error = describeError(e)),
  );
}

export function modelInfo(id: string): ModelInfo | null {
  return models.list?.find((m) => m.id === id) ?? null;
}
