// The metrics moved to their own module (src/metrics); this re-export keeps older imports working
// until every branch imports from there.
export { BotMetrics } from '../metrics/metrics.js';
