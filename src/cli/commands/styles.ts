// `vistyle styles [--json] [--styles-file PATH] [--lang zh|en]`: list the style registry (built-ins
// plus the styles file), the default first. Loading the list also validates the styles file, so this
// doubles as a check after editing it. `--json` prints {file, default, styles: [Style...]}, each
// style with its id, names, systemPrompt, ... as the trainer's README line reads it:
//   vistyle styles --styles-file styles.yaml --json | jq -r '.styles[] | select(.id=="pirate") | .systemPrompt'
// `--file` is the older name of --styles-file.
import type { Command } from 'commander';
import { VistyleError } from '../../errors.js';
import { openStyleRegistry } from '../../styles/registry.js';
import type { Language, Style } from '../../styles/types.js';

interface StylesCommandOptions {
  json?: boolean;
  stylesFile?: string;
  file?: string;
  lang?: string;
}

export function registerStylesCommand(program: Command): void {
  program
    .command('styles')
    .description('list the styles (id, names, description, adapter)')
    .option('--json', 'print the styles as JSON')
    .option('--styles-file <path>', 'styles file (default: VISTYLE_STYLES_FILE)')
    .option('--file <path>', 'the same as --styles-file (older name)')
    .option('--lang <zh|en>', 'language of descriptions', 'en')
    .action((options: StylesCommandOptions) => {
      const lang = options.lang ?? 'en';
      if (lang !== 'zh' && lang !== 'en') throw new VistyleError('CONFIG_INVALID', `--lang must be zh or en, not "${lang}"`);
      const file = options.stylesFile ?? options.file;
      const registry = openStyleRegistry({ watch: false, ...(file === undefined ? {} : { file }) });
      try {
        const defaultId = registry.defaultStyle().id;
        const styles = registry.list();
        process.stdout.write(
          options.json
            ? `${JSON.stringify({ file: registry.file, default: defaultId, styles: styles.map(toJson) }, null, 2)}\n`
            : formatTable(styles, defaultId, lang),
        );
      } finally {
        registry.close();
      }
    });
}

function toJson(style: Style): Record<string, unknown> {
  return { ...style };
}

/** One block per style: id (with * for the default), both names, the description, the adapter. */
export function formatTable(styles: Style[], defaultId: string, lang: Language): string {
  const width = Math.max(...styles.map((style) => style.id.length)) + 2;
  const lines: string[] = [];
  for (const style of styles) {
    const mark = style.id === defaultId ? '*' : ' ';
    lines.push(`${mark} ${style.id.padEnd(width)}${style.names.en} / ${style.names.zh}`);
    lines.push(`  ${' '.repeat(width)}${style.description[lang]}`);
    if (style.adapter) {
      const scale = style.adapter.scale === undefined ? '' : ` (scale ${style.adapter.scale})`;
      lines.push(`  ${' '.repeat(width)}adapter: ${style.adapter.path}${scale}`);
    }
  }
  lines.push('', '* default style');
  return `${lines.join('\n')}\n`;
}
