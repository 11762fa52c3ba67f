export { Store, type Conversation, type ConversationImage, type ConversationWithTurns, type PictureInput, type SaveTurnInput, type Settings, type SettingScope, type StoreOptions, type StoredImage, type Turn } from './store.js';
export { migrate, MIGRATIONS, SCHEMA_VERSION, type Migration } from './migrations.js';
