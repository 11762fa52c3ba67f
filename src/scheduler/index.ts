export { Scheduler, LimitError, type Job, type JobSpec, type QueueNotice, type RunContext, type SchedulerOptions, type SchedulerStatus } from './scheduler.js';
export type { AnswerScheduler } from './answer-scheduler.js';
export { BotMetrics } from '../metrics/metrics.js';
