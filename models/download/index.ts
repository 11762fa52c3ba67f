// Fetching a Hugging Face checkpoint from the Hugging Face hub or its ModelScope mirror.
export { downloadCheckpoint, DOWNLOAD_RECORD_FILE } from './pull.js';
export type { DownloadCheckpointOptions, DownloadCheckpointResult, DownloadedFile, DownloadRecord } from './pull.js';
export { resolveHub, parseHubSource, huggingFaceToken, HUB_SOURCES, DEFAULT_HF_ENDPOINT, DEFAULT_MODELSCOPE_ENDPOINT } from './hubs.js';
export type { Hub, HubSource, RemoteFile, RepoListing } from './hubs.js';
export { CHECKPOINT_FILES, selectCheckpointFiles } from './select.js';
export { reporterFor, lineReporter, barReporter, silentReporter, formatBytes } from './progress.js';
export type { DownloadReporter, PlanInfo } from './progress.js';
export { DEFAULT_RETRY_POLICY } from './retry.js';
export type { RetryPolicy } from './retry.js';
