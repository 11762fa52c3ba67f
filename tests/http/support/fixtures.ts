// Pictures the HTTP tests send (copied fixtures, no ../shared needed).
import { readFileSync } from 'node:fs';

export const PNG = new Uint8Array(readFileSync(new URL('../../fixtures/images/test_image_64x48.png', import.meta.url)));
export const PNG_2 = new Uint8Array(readFileSync(new URL('../../fixtures/images/test_image2_40x56.png', import.meta.url)));
export const dataUrl = (bytes: Uint8Array, mime = 'image/png') => `data:${mime};base64,${Buffer.from(bytes).toString('base64')}`;
export const PNG_DATA_URL = dataUrl(PNG);
