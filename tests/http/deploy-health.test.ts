// The container health checks cannot run here (no Docker engine); these checks keep them in step
// with the code: the Dockerfile's HEALTHCHECK and the compose file's healthcheck run the same
// command, on the file the build writes from src/http/healthcheck.ts (tested against a real server
// in health.test.ts), with a start period for the model to load; the exposed port is the default.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { DEFAULT_HTTP_PORT } from '../../src/http/defaults.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const read = (path: string) => readFileSync(join(REPO, path), 'utf8');

describe('container health checks', () => {
  const dockerfile = read('deploy/Dockerfile');
  const compose = YAML.parse(read('deploy/docker-compose.yml')) as { services: { vistyle: { healthcheck: { test: string[]; start_period: string } } } };

  it('run the built health check command on /readyz, in the Dockerfile and in compose alike', () => {
    const match = /^HEALTHCHECK (.*?)\\\n\s+CMD (\[.*\])$/m.exec(dockerfile);
    expect(match, 'a HEALTHCHECK ... CMD [...] instruction').not.toBeNull();
    expect(match![1]).toMatch(/--start-period=\d+m/);
    const command = JSON.parse(match![2]!) as string[];
    expect(command).toEqual(['node', '/app/dist/src/http/healthcheck.js', '/readyz']);
    expect(compose.services.vistyle.healthcheck.test).toEqual(['CMD', ...command]);
    expect(compose.services.vistyle.healthcheck.start_period).toMatch(/^\d+m$/);
    // /app/dist/src/http/healthcheck.js is what `npm run build` makes of this source (WORKDIR /app)
    expect(dockerfile).toMatch(/^WORKDIR \/app$/m);
    expect(dockerfile).toContain('COPY --from=build /app/dist ./dist');
    expect(existsSync(join(REPO, 'src/http/healthcheck.ts'))).toBe(true);
    const build = JSON.parse(read('tsconfig.build.json')) as { include: string[] };
    expect(build.include).toContain('src');
  });

  it('expose the default HTTP port', () => {
    expect(dockerfile).toMatch(new RegExp(`^EXPOSE ${DEFAULT_HTTP_PORT}$`, 'm'));
    expect(read('deploy/docker-compose.yml')).toContain(`"127.0.0.1:${DEFAULT_HTTP_PORT}:${DEFAULT_HTTP_PORT}"`);
  });
});
