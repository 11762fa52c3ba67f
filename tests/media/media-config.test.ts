// The media settings: VISTYLE_VIDEO_FRAMES defaults to 4 on CPU and 8 on a GPU provider; the
// limits are validated like every other variable.
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.js';

const config = (env: Record<string, string> = {}) => loadConfig({ VISTYLE_HOME: '/tmp/vistyle-media-config', ...env });

describe('media configuration', () => {
  it('has defaults per provider, and reuses VISTYLE_MAX_IMAGES_PER_MESSAGE', () => {
    expect(config().media).toEqual({ maxImagesPerMessage: 4, videoFrames: 4, videoMaxSeconds: 120, videoMaxBytes: 50 * 1024 * 1024 });
    expect(config({ VISTYLE_PROVIDER: 'cuda' }).media.videoFrames).toBe(8);
    expect(config({ VISTYLE_PROVIDER: 'cuda', VISTYLE_VIDEO_FRAMES: '6' }).media.videoFrames).toBe(6);
    expect(config({ VISTYLE_MAX_IMAGES_PER_MESSAGE: '2', VISTYLE_VIDEO_MAX_SECONDS: '30', VISTYLE_VIDEO_MAX_BYTES: '1048576' }).media).toMatchObject({
      maxImagesPerMessage: 2,
      videoMaxSeconds: 30,
      videoMaxBytes: 1048576,
    });
  });

  it('names the variable of a bad value', () => {
    expect(() => config({ VISTYLE_VIDEO_FRAMES: '0' })).toThrow(/VISTYLE_VIDEO_FRAMES/);
    expect(() => config({ VISTYLE_VIDEO_MAX_SECONDS: 'long' })).toThrow(/VISTYLE_VIDEO_MAX_SECONDS/);
  });
});
