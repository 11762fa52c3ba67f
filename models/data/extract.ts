// Pulls the `{question, answer}` object out of a chat model's reply. Models wrap JSON in code
// fences, add a sentence before or after it, or say `ans` instead of `answer`; all of that is
// accepted. What is left must pass the schema.
import { z } from 'zod';

export const StyledQaSchema = z.object({
  question: z.string().trim().min(1, 'question is empty').max(2000, 'question is too long'),
  answer: z.string().trim().min(1, 'answer is empty').max(8000, 'answer is too long'),
});
export type StyledQa = z.infer<typeof StyledQaSchema>;

/** The first balanced `{...}` in text (braces inside JSON strings are skipped), or null. */
export function firstJsonObject(text: string): string | null {
  for (let start = text.indexOf('{'); start >= 0; start = text.indexOf('{', start + 1)) {
    let depth = 0;
    let inString = false;
    let escaped = false;
    for (let i = start; i < text.length; i++) {
      const c = text[i];
      if (inString) {
        if (escaped) escaped = false;
        else if (c === '\\') escaped = true;
        else if (c === '"') inString = false;
        continue;
      }
      if (c === '"') inString = true;
      else if (c === '{') depth++;
      else if (c === '}' && --depth === 0) {
        const candidate = text.slice(start, i + 1);
        try {
          JSON.parse(candidate);
          return candidate;
        } catch {
          break; // balanced but not JSON: try the next opening brace
        }
      }
    }
  }
  return null;
}

export type ExtractResult = { ok: true; value: StyledQa } | { ok: false; error: string };

export function extractStyledQa(reply: string): ExtractResult {
  const fenced = /```(?:json|JSON)?\s*([\s\S]*?)```/.exec(reply);
  const candidates = [fenced?.[1], reply].filter((text): text is string => typeof text === 'string');
  let json: string | null = null;
  for (const text of candidates) {
    json = firstJsonObject(text);
    if (json) break;
  }
  if (!json) return { ok: false, error: 'no JSON object in the reply' };
  const value = JSON.parse(json) as Record<string, unknown>;
  const candidate = { question: value.question ?? value.q, answer: value.answer ?? value.ans ?? value.a };
  const parsed = StyledQaSchema.safeParse(candidate);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    return { ok: false, error: `reply JSON does not fit {question, answer}: ${issue.path.join('.')}: ${issue.message}` };
  }
  return { ok: true, value: parsed.data };
}
