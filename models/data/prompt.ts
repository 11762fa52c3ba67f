// The request the styled-data maker sends for one caption. The style's own `dataPrompt` describes
// the voice (and the language); this frame adds the task and the output format. The answer must
// speak as if looking at the photo — the original data often said "the description says...",
// which a model answering about a real photo should never say.
import { VistyleError } from '../../src/errors.js';
import type { Style } from '../../src/styles/types.js';
import type { ChatMessageIn } from './chat-api.js';

export function dataMakerMessages(style: Style, caption: string): ChatMessageIn[] {
  if (!style.dataPrompt) {
    throw new VistyleError('DATA_INVALID', `style "${style.id}" has no dataPrompt; add one in the styles file to make data for it`);
  }
  const system = [
    'You write training data for a vision-language assistant that answers questions about photos in a particular voice.',
    'You are given a detailed description of one photo. Pose ONE question that a viewer could answer just by looking at the photo,',
    'and answer it in the voice described below. The answer must be correct for the photo and must speak as if looking at the photo',
    'itself: never mention a description, caption or text you were given. Do not invent details the description does not support.',
    '',
    `Voice: ${style.dataPrompt}`,
    '',
    'Reply with only a JSON object, no other text: {"question": "...", "answer": "..."}',
  ].join('\n');
  return [
    { role: 'system', content: system },
    { role: 'user', content: `Photo description:\n${caption}` },
  ];
}
