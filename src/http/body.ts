// Reading a JSON request body with a size limit: a declared Content-Length over the limit is
// refused before reading, a body that grows past it is cut off; both are 413.
import type { IncomingMessage } from 'node:http';
import { ApiError, badRequest } from './api-error.js';

export async function readJsonBody(request: IncomingMessage, maxBytes: number): Promise<unknown> {
  const type = String(request.headers['content-type'] ?? '').toLowerCase();
  if (type && !type.includes('json')) throw badRequest('The request body must be JSON (Content-Type: application/json).', null, 'invalid_json');
  const tooLarge = () => new ApiError(413, `The request body is larger than ${maxBytes} bytes.`, 'invalid_request_error', 'request_too_large');
  const declared = Number(request.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxBytes) {
    request.resume();
    throw tooLarge();
  }
  const body = await new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    const onData = (chunk: Buffer) => {
      total += chunk.length;
      if (total <= maxBytes) return void chunks.push(chunk);
      // Keep reading (and dropping) the rest so the 413 reaches the client.
      request.off('data', onData);
      request.resume();
      reject(tooLarge());
    };
    request.on('data', onData);
    request.once('end', () => resolve(Buffer.concat(chunks)));
    request.once('error', reject);
    request.once('close', () => reject(new Error('the client went away while sending the body')));
  });
  const text = body.toString('utf8');
  if (!text.trim()) throw badRequest('The request body is empty.', null, 'invalid_json');
  try {
    return JSON.parse(text);
  } catch {
    throw badRequest('The request body is not valid JSON.', null, 'invalid_json');
  }
}
