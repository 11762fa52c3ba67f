// Public surface of the metrics module.
export { BotMetrics } from './metrics.js';
