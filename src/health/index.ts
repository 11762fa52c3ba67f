// Public surface of the health module: the readiness registry and the checks for vistyle's own parts.
export { Readiness, DEFAULT_CHECK_TIMEOUT_MS, type CheckResult, type ReadinessCheck, type ReadinessReport } from './readiness.js';
export { engineCheck, storeCheck, adapterCheck, type ReportsReadiness } from './checks.js';
