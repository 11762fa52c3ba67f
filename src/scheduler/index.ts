export { Scheduler, LimitError, type Job, type JobSpec, type RunContext, type SchedulerOptions, type SchedulerStatus } from './scheduler.js';
export { BotMetrics } from '../metrics/metrics.js';
