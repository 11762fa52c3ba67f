// Endpoint resolution, URLs and listing parsing for both hubs, and the file selection.
import { describe, expect, it } from 'vitest';
import { huggingFaceToken, parseHubSource, resolveHub, selectCheckpointFiles } from '../../models/download/index.js';
import { parseContentRange } from '../../models/download/file-download.js';
import { isVistyleError } from '../../src/errors.js';

const ID = 'llava-hf/llava-interleave-qwen-0.5b-hf';

describe('hub endpoints', () => {
  it('default to huggingface.co and www.modelscope.cn', () => {
    expect(resolveHub('huggingface', {}).endpoint).toBe('https://huggingface.co');
    expect(resolveHub('modelscope', {}).endpoint).toBe('https://www.modelscope.cn');
  });

  it('follow HF_ENDPOINT, with VISTYLE_HF_ENDPOINT first, trailing slashes dropped', () => {
    expect(resolveHub('huggingface', { HF_ENDPOINT: 'https://hf-mirror.com/' }).endpoint).toBe('https://hf-mirror.com');
    expect(resolveHub('huggingface', { HF_ENDPOINT: 'https://hf-mirror.com', VISTYLE_HF_ENDPOINT: 'http://10.0.0.2:8080' }).endpoint).toBe('http://10.0.0.2:8080');
    // an empty value (VAR= in an env file) is unset
    expect(resolveHub('huggingface', { VISTYLE_HF_ENDPOINT: '', HF_ENDPOINT: 'https://hf-mirror.com' }).endpoint).toBe('https://hf-mirror.com');
  });

  it('follow MODELSCOPE_ENDPOINT, VISTYLE_MODELSCOPE_ENDPOINT first, and the library’s MODELSCOPE_DOMAIN last', () => {
    expect(resolveHub('modelscope', { MODELSCOPE_ENDPOINT: 'https://ms.example' }).endpoint).toBe('https://ms.example');
    expect(resolveHub('modelscope', { MODELSCOPE_ENDPOINT: 'https://ms.example', VISTYLE_MODELSCOPE_ENDPOINT: 'https://mine.example' }).endpoint).toBe('https://mine.example');
    expect(resolveHub('modelscope', { MODELSCOPE_DOMAIN: 'www.modelscope.ai' }).endpoint).toBe('https://www.modelscope.ai');
  });

  it('reject an endpoint that is not an http(s) URL, naming the variable', () => {
    for (const value of ['hf-mirror.com', 'ftp://mirror.example']) {
      let error: unknown;
      try {
        resolveHub('huggingface', { HF_ENDPOINT: value });
      } catch (e) {
        error = e;
      }
      expect(isVistyleError(error, 'CONFIG_INVALID')).toBe(true);
      expect((error as Error).message).toMatch(/^HF_ENDPOINT /);
    }
  });

  it('reject an endpoint with credentials in it without printing them', () => {
    for (const [source, env] of [
      ['huggingface', { HF_ENDPOINT: 'https://alice:s3cr3t-pw@mirror.example/hf/' }],
      ['modelscope', { MODELSCOPE_ENDPOINT: 'http://bob:s3cr3t-pw@10.0.0.2:8080' }],
    ] as const) {
      let error: unknown;
      try {
        resolveHub(source, env);
      } catch (e) {
        error = e;
      }
      expect(isVistyleError(error, 'CONFIG_INVALID')).toBe(true);
      expect((error as Error).message).toMatch(/^(HF|MODELSCOPE)_ENDPOINT must not carry a user name or password/);
      expect((error as Error).message).not.toMatch(/s3cr3t|alice|bob/);
    }
  });

  it('build the listing and file URLs each hub documents', () => {
    const hf = resolveHub('huggingface', {});
    expect(hf.listingUrl(ID, 'main')).toBe(`https://huggingface.co/api/models/${ID}/revision/main?blobs=true`);
    expect(hf.listingUrl(ID, 'refs/pr/1')).toBe(`https://huggingface.co/api/models/${ID}/revision/refs%2Fpr%2F1?blobs=true`);
    expect(hf.fileUrl(ID, 'abc', 'sub dir/a b.json')).toBe(`https://huggingface.co/${ID}/resolve/abc/sub%20dir/a%20b.json`);
    const ms = resolveHub('modelscope', {});
    expect(ms.listingUrl(ID, 'master')).toBe(`https://www.modelscope.cn/api/v1/models/${ID}/repo/files?Revision=master&Recursive=true`);
    expect(ms.fileUrl(ID, 'master', 'sub/model.safetensors')).toBe(
      `https://www.modelscope.cn/api/v1/models/${ID}/repo?Revision=master&FilePath=sub%2Fmodel.safetensors`,
    );
    expect(hf.defaultRevision).toBe('main');
    expect(ms.defaultRevision).toBe('master');
  });
});

describe('listings', () => {
  it('Hugging Face: LFS files carry sha256 and size, git files their blob id', () => {
    const listing = resolveHub('huggingface', {}).parseListing(
      {
        id: ID,
        sha: 'A'.repeat(40),
        siblings: [
          { rfilename: 'config.json', size: 1234, blobId: 'b'.repeat(40) },
          { rfilename: 'model.safetensors', size: 1_796_000_000, blobId: 'c'.repeat(40), lfs: { sha256: 'D'.repeat(64), size: 1_796_000_000, pointerSize: 135 } },
          { rfilename: 'README.md' },
        ],
      },
      ID,
      'main',
    );
    expect(listing.commit).toBe('a'.repeat(40));
    expect(listing.files).toEqual([
      { path: 'config.json', size: 1234, gitBlobSha1: 'b'.repeat(40) },
      { path: 'model.safetensors', size: 1_796_000_000, sha256: 'd'.repeat(64) },
      { path: 'README.md' },
    ]);
  });

  it('ModelScope: folders skipped, Sha256 and Size kept; an error code is an error', () => {
    const ms = resolveHub('modelscope', {});
    const listing = ms.parseListing(
      { Code: 200, Data: { Files: [{ Path: 'onnx', Type: 'tree' }, { Path: 'config.json', Type: 'blob', Size: 10, Sha256: 'e'.repeat(64) }] } },
      ID,
      'master',
    );
    expect(listing.files).toEqual([{ path: 'config.json', size: 10, sha256: 'e'.repeat(64) }]);
    expect(() => ms.parseListing({ Code: 10010205001, Message: 'model not exists' }, ID, 'master')).toThrow(/model not exists/);
    expect(() => ms.parseListing({ Code: 200, Data: {} }, ID, 'master')).toThrow(/Data\.Files/);
  });
});

describe('selection', () => {
  const f = (path: string) => ({ path, size: 1 });

  it('keeps the model files only, single weights over shards', () => {
    const chosen = selectCheckpointFiles(
      ['config.json', 'tokenizer.json', 'model.safetensors', 'pytorch_model.bin', 'README.md', 'chat_template.json', 'onnx/model.onnx'].map(f),
      'repo',
    ).map((file) => file.path);
    expect(chosen.sort()).toEqual(['chat_template.json', 'config.json', 'model.safetensors', 'tokenizer.json']);
  });

  it('takes the index and its shards for a sharded checkpoint', () => {
    const chosen = selectCheckpointFiles(
      ['config.json', 'tokenizer.json', 'model.safetensors.index.json', 'model-00002-of-00002.safetensors', 'model-00001-of-00002.safetensors'].map(f),
      'repo',
    ).map((file) => file.path);
    expect(chosen).toEqual(['config.json', 'tokenizer.json', 'model.safetensors.index.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']);
  });

  it('refuses a repository without weights', () => {
    expect(() => selectCheckpointFiles(['config.json', 'tokenizer.json', 'pytorch_model.bin'].map(f), 'repo')).toThrow(/no safetensors weights/);
  });
});

describe('small parsers', () => {
  it('Content-Range', () => {
    expect(parseContentRange('bytes 100-199/1000')).toEqual({ start: 100, total: 1000 });
    expect(parseContentRange('bytes 0-0/*')).toEqual({ start: 0, total: undefined });
    expect(parseContentRange('items 1-2/3')).toBeUndefined();
    expect(parseContentRange(null)).toBeUndefined();
  });

  it('sources and tokens', () => {
    expect(parseHubSource('HuggingFace')).toBe('huggingface');
    expect(parseHubSource('ms')).toBe('modelscope');
    expect(() => parseHubSource('github')).toThrow(/use huggingface or modelscope/);
    expect(huggingFaceToken({ HUGGING_FACE_HUB_TOKEN: 'old', HF_TOKEN: 'new' })).toBe('new');
    expect(huggingFaceToken({ HUGGING_FACE_HUB_TOKEN: 'old' })).toBe('old');
    expect(huggingFaceToken({ HF_TOKEN: '' })).toBeUndefined();
  });
});
