// Pictures, animations and short videos: what a file a user sent becomes for the model.
export { animationFrames, animationInfo, MAX_ANIMATION_FRAMES, MAX_ANIMATION_PIXELS, sampleFrameIndexes } from './animation.js';
export { mediaError, mediaRefusalOf, MEDIA_REFUSALS, type MediaRefusal } from './errors.js';
export { ffmpegAvailable, ffmpegVersion, findFfmpeg, MAX_CONCURRENT_VIDEOS, sampleTimes, videoFrames, videoReads, type FfmpegTools } from './ffmpeg.js';
export { expandMedia, FRAME_MAX_SIDE, VIDEO_TOOL_TIMEOUT_MS, videoTooLarge, type ExpandedMedia, type ExpandOptions } from './pictures.js';
export { isVideoMime, sniffImage, sniffMedia, type ImageKind, type SniffedMedia, type VideoContainer } from './sniff.js';
export { findOnPath, runTool, type RunOptions, type RunResult } from './tool.js';
