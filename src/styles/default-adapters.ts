// Trained adapters in their default place: a style whose entry names no adapter uses
// `<adapters dir>/<style id>` (VISTYLE_HOME/adapters/pirate) when that folder holds a PEFT adapter,
// so that `train.py --out ~/.vistyle/adapters/pirate` is all it takes. `adapter: null` in the
// styles file opts a style out; an explicit path always wins. A folder without both files (a
// training run still going, or a failed one) is passed over here and reported by `vistyle doctor`.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE } from '../../models/lora/names.js';
import type { LoadedStyles } from './file.js';

/** The adapter folder a style would use by default (whether or not it exists). */
export function defaultAdapterPath(adaptersDir: string, styleId: string): string {
  return join(adaptersDir, styleId);
}

/** Whether `dir` holds a PEFT adapter (its config and its weights). */
export function isAdapterFolder(dir: string): boolean {
  return existsSync(join(dir, ADAPTER_CONFIG_FILE)) && existsSync(join(dir, ADAPTER_WEIGHTS_FILE));
}

/** The styles with the adapters found under `adaptersDir` filled in where none is named. */
export function withDefaultAdapters(loaded: LoadedStyles, adaptersDir: string): LoadedStyles {
  const given = new Set(loaded.adapterGiven ?? []);
  const styles = loaded.styles.map((style) => {
    if (style.adapter || given.has(style.id)) return style;
    const path = defaultAdapterPath(adaptersDir, style.id);
    return isAdapterFolder(path) ? { ...style, adapter: { path } } : style;
  });
  return { ...loaded, styles };
}
