// A fake Telegram Bot API for end-to-end tests; see server.ts.
export { FakeTelegram, detectEntities } from './server.js';
export type { DraftState, FakeTelegramOptions, PhotoSizeSpec, InjectOptions, FailureRule } from './server.js';
export { parseTelegramHtml, EntityParseError } from './html.js';
export type { FakeEntity, ParsedHtml } from './html.js';
export type * from './types.js';
export { RemoteFakeTelegram } from './remote.js';
