// The live style registry: the built-in styles merged with the operator's styles file, reloaded
// when the file changes (fs.watch on its folder, so an editor's or deploy tool's atomic
// write-then-rename is seen too) or when an admin asks. A reload that fails keeps the last good
// styles and logs what is wrong; only the first load, at start-up, throws.
import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { isVistyleError, VistyleError } from '../errors.js';
import { moduleLogger, type Logger } from '../log.js';
import { adaptersHome } from '../paths.js';
import { withDefaultAdapters } from './default-adapters.js';
import { builtinLoadedStyles, loadStylesFile, type LoadedStyles } from './file.js';
import type { Style, StyleRegistry } from './types.js';

/** The env var that names the styles file. */
export const STYLES_FILE_ENV = 'VISTYLE_STYLES_FILE';

export function stylesFileFromEnv(env: NodeJS.ProcessEnv = process.env): string | null {
  const value = env[STYLES_FILE_ENV]?.trim();
  return value ? value : null;
}

export interface StyleRegistryOptions {
  /** Styles file (YAML or JSON); null or undefined for the built-in styles alone. */
  file?: string | null;
  /** Reload when the file changes (default true when there is a file). */
  watch?: boolean;
  /** Quiet time after the last change event before reloading (default 200 ms). */
  debounceMs?: number;
  logger?: Logger;
  /** Trained adapters, one folder per style id, used by styles that name none (default
   *  adaptersHome(): <VISTYLE_HOME>/adapters); null: none. */
  adaptersDir?: string | null;
}

/** Style ids are lower case; `Grumpy` and ` grumpy ` name the same style. */
export function normalizeStyleId(id: string): string {
  return id.trim().toLowerCase();
}

/**
 * STYLE_UNKNOWN listing the known ids, with where styles come from: the built-ins, and a styles
 * file only when one is given (--styles-file, VISTYLE_STYLES_FILE).
 */
export function unknownStyleError(id: string, registry: Pick<StyleRegistry, 'list'> & { file?: string | null }): VistyleError {
  const known = registry.list().map((s) => s.id).join(', ');
  const where = registry.file
    ? `the styles file in use is ${registry.file}`
    : `no styles file is in use: pass --styles-file FILE, or set ${STYLES_FILE_ENV} (in the environment or .env)`;
  return new VistyleError('STYLE_UNKNOWN', `unknown style "${id}" (known: ${known}); ${where}`, { details: { style: id } });
}

export type ReloadResult =
  | { ok: true; styles: number; defaultId: string }
  | { ok: false; error: VistyleError };

export type ReloadListener = (result: ReloadResult) => void;

export class LiveStyleRegistry implements StyleRegistry {
  readonly file: string | null;
  private current: LoadedStyles;
  private byId: Map<string, Style>;
  private watcher: FSWatcher | null = null;
  private timer: NodeJS.Timeout | null = null;
  private readonly listeners = new Set<ReloadListener>();
  private readonly log: Logger;
  private readonly debounceMs: number;
  private readonly adaptersDir: string | null;

  /** Loads the styles now; a broken file at start-up throws VistyleError('STYLES_INVALID'). */
  constructor(options: StyleRegistryOptions = {}) {
    this.file = options.file ? resolve(options.file) : null;
    this.log = options.logger ?? moduleLogger('styles');
    this.debounceMs = options.debounceMs ?? 200;
    this.adaptersDir = options.adaptersDir === undefined ? adaptersHome() : options.adaptersDir;
    this.current = this.load();
    this.byId = indexById(this.current.styles);
    if (this.file && (options.watch ?? true)) this.startWatching(this.file);
  }

  get(id: string): Style | undefined {
    return this.byId.get(normalizeStyleId(id));
  }

  list(): Style[] {
    return [...this.current.styles];
  }

  defaultStyle(): Style {
    return this.byId.get(this.current.defaultId)!;
  }

  /** The style with this id, or a STYLE_UNKNOWN error that lists the known ids. */
  require(id: string): Style {
    const style = this.get(id);
    if (!style) throw unknownStyleError(id, this);
    return style;
  }

  /**
   * Re-reads the styles file. On success the new styles replace the old ones at once; on failure
   * the last good styles stay and the error is logged and returned (for an admin command to show).
   */
  reload(): ReloadResult {
    if (!this.file) return this.emit({ ok: true, styles: this.current.styles.length, defaultId: this.current.defaultId });
    try {
      const next = this.load();
      this.current = next;
      this.byId = indexById(next.styles);
      this.log.info({ file: this.file, styles: next.styles.map((s) => s.id), default: next.defaultId }, 'styles reloaded');
      return this.emit({ ok: true, styles: next.styles.length, defaultId: next.defaultId });
    } catch (error) {
      const failure = isVistyleError(error)
        ? error
        : new VistyleError('STYLES_INVALID', `styles file ${this.file}: ${String(error)}`, { cause: error });
      this.log.error(
        { file: this.file, err: failure.message, issues: failure.details?.issues },
        'styles file is broken; keeping the last good styles',
      );
      return this.emit({ ok: false, error: failure });
    }
  }

  /** Called after every reload attempt (file change or reload()). Returns an unsubscribe function. */
  onReload(listener: ReloadListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Stops watching the file. */
  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.watcher?.close();
    this.watcher = null;
    this.listeners.clear();
  }

  /** The file (or the built-ins), with the trained adapters found under adaptersDir. */
  private load(): LoadedStyles {
    const loaded = this.file ? loadStylesFile(this.file) : builtinLoadedStyles();
    return this.adaptersDir ? withDefaultAdapters(loaded, this.adaptersDir) : loaded;
  }

  private startWatching(file: string): void {
    const name = basename(file);
    try {
      // Watch the folder, not the file: a rename over the file replaces its inode, which a
      // watch on the file itself stops seeing.
      this.watcher = watch(dirname(file), { persistent: false }, (_event, changed) => {
        if (changed === null || changed.toString() === name) this.scheduleReload();
      });
      this.watcher.on('error', (error) => {
        this.log.warn({ file, err: String(error) }, 'cannot watch the styles file any more; use reload');
      });
    } catch (error) {
      this.log.warn({ file, err: String(error) }, 'cannot watch the styles file; changes need a reload');
    }
  }

  private scheduleReload(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.reload();
    }, this.debounceMs);
    this.timer.unref();
  }

  private emit(result: ReloadResult): ReloadResult {
    for (const listener of this.listeners) {
      try {
        listener(result);
      } catch (error) {
        this.log.warn({ err: String(error) }, 'styles reload listener failed');
      }
    }
    return result;
  }
}

function indexById(styles: Style[]): Map<string, Style> {
  return new Map(styles.map((style) => [style.id, deepFreeze(style)]));
}

/** Styles are shared by every request; freezing them stops one caller from changing another's voice. */
function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

/**
 * Opens the registry the app uses: the styles file from options or VISTYLE_STYLES_FILE, watched
 * for changes. Throws VistyleError('STYLES_INVALID') when that file is broken at start-up.
 */
export function openStyleRegistry(options: StyleRegistryOptions = {}): LiveStyleRegistry {
  const file = options.file === undefined ? stylesFileFromEnv() : options.file;
  return new LiveStyleRegistry({ ...options, file });
}

/** The built-in styles alone (no file, nothing watched). */
export function builtinStyleRegistry(): LiveStyleRegistry {
  return new LiveStyleRegistry({ file: null });
}
