// Model output can contain control characters (a random or badly tuned checkpoint emits \u0000
// and other C0/C1 codes). Platforms reject some of them (Telegram answers 400 for text that is only
// control characters, Discord shows them as boxes) and JSON consumers of the HTTP API choke on
// others, so every answer is cleaned before it leaves the process: the core's sink driver does it
// for the chat adapters, and the HTTP API uses the same function.

/** Every Unicode control character (category Cc: C0, DEL, C1) except tab and newline. */
const CONTROL = /[\u0000-\u0008\u000B-\u001F\u007F-\u009F]/gu;

/**
 * `text` without control characters, keeping newline and tab. A carriage return becomes a line
 * break (CRLF and lone CR alike), so lines written with either stay apart.
 */
export function stripControlChars(text: string): string {
  return text.replace(/\r\n?/g, '\n').replace(CONTROL, '');
}

/** Whether `text` shows anything at all once control characters and whitespace are gone. */
export function isBlankAnswer(text: string): boolean {
  return stripControlChars(text).trim() === '';
}
