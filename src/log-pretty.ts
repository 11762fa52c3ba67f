// Pretty log lines for a person at a terminal (VISTYLE_LOG_FORMAT=pretty, the default when stderr
// is a TTY): `12:04:05.123 INFO  bot: request answered platform=telegram totalMs=812`, the level
// coloured unless NO_COLOR is set. Hand-written (some 50 lines) rather than pino-pretty, which
// would add a dependency tree for what is a string format; machines get pino's JSON unchanged.

const LEVELS: Record<number, { name: string; color: string }> = {
  10: { name: 'TRACE', color: '\x1b[90m' },
  20: { name: 'DEBUG', color: '\x1b[36m' },
  30: { name: 'INFO', color: '\x1b[32m' },
  40: { name: 'WARN', color: '\x1b[33m' },
  50: { name: 'ERROR', color: '\x1b[31m' },
  60: { name: 'FATAL', color: '\x1b[35m' },
};
const RESET = '\x1b[0m';
const DIM = '\x1b[2m';
/** Fields every line has, shown in the prefix or not at all. */
const HIDDEN = new Set(['level', 'time', 'app', 'module', 'msg', 'pid', 'hostname']);

function clock(time: unknown): string {
  const date = typeof time === 'number' ? new Date(time) : new Date();
  const pad = (n: number, width = 2) => String(n).padStart(width, '0');
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
}

function value(v: unknown): string {
  if (typeof v === 'string') return /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v);
  return JSON.stringify(v) ?? String(v);
}

/** One pino JSON line -> one human line (plus indented stack lines when an error has a stack). */
export function prettyLine(line: string, options: { color?: boolean } = {}): string {
  let record: Record<string, unknown>;
  try {
    record = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line.endsWith('\n') ? line : `${line}\n`; // not ours: pass it on as it is
  }
  if (record === null || typeof record !== 'object') return line;
  const color = options.color ?? false;
  const level = LEVELS[Number(record.level)] ?? { name: String(record.level ?? '?'), color: '' };
  const levelText = level.name.padEnd(5);
  const stacks: string[] = [];
  const fields: string[] = [];
  for (const [key, v] of Object.entries(record)) {
    if (HIDDEN.has(key)) continue;
    if (v && typeof v === 'object' && 'stack' in v && typeof (v as { stack: unknown }).stack === 'string') {
      const { stack, ...rest } = v as { stack: string };
      stacks.push(stack);
      fields.push(`${key}=${value(rest)}`);
      continue;
    }
    fields.push(`${key}=${value(v)}`);
  }
  const module = typeof record.module === 'string' ? `${record.module}: ` : '';
  const time = color ? `${DIM}${clock(record.time)}${RESET}` : clock(record.time);
  const levelShown = color ? `${level.color}${levelText}${RESET}` : levelText;
  const rest = fields.length > 0 ? ` ${color ? DIM : ''}${fields.join(' ')}${color ? RESET : ''}` : '';
  const stackText = stacks.map((stack) => `\n${stack.replace(/^/gm, '    ')}`).join('');
  return `${time} ${levelShown} ${module}${String(record.msg ?? '')}${rest}${stackText}\n`;
}
