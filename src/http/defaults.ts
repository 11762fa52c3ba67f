// Defaults of the HTTP server, in a module of their own so the container health check
// (healthcheck.ts) can read them without loading the app.

/** The port `vistyle start` serves health and metrics on when VISTYLE_HTTP_PORT is not set, and `vistyle serve`'s default. */
export const DEFAULT_HTTP_PORT = 8484;
