// Checkpoint reader: both tensor-name layouts, shards, bf16/fp16/fp32, HF defaults, and errors that
// name the file and field (or the tensor) that is missing.
import { mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Tokenizer } from '@huggingface/tokenizers';
import { Template } from '@huggingface/jinja';
import { generateCheckpoint, type CheckpointOptions } from '../../models/checkpoint/generate.js';
import { openCheckpoint } from '../../models/checkpoint/reader.js';
import { isVistyleError } from '../../src/errors.js';
import { TINY_A_DIR } from './fixture.js';

const root = mkdtempSync(join(tmpdir(), 'vistyle-reader-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
function gen(options: CheckpointOptions = {}): string {
  const dir = join(root, `c${n++}`);
  generateCheckpoint(dir, options);
  return dir;
}

function editJson(path: string, edit: (j: Record<string, any>) => void): void {
  const j = JSON.parse(readFileSync(path, 'utf8'));
  edit(j);
  writeFileSync(path, JSON.stringify(j));
}

function expectInvalid(dir: string, message: string | RegExp): void {
  let error: unknown;
  try {
    openCheckpoint(dir).close();
  } catch (e) {
    error = e;
  }
  expect(isVistyleError(error, 'CHECKPOINT_INVALID'), String(error)).toBe(true);
  expect((error as Error).message).toMatch(message);
}

describe('checkpoint reader', () => {
  it('reads the transformers fixture (legacy layout, tied, fp32)', () => {
    const c = openCheckpoint(TINY_A_DIR);
    try {
      expect(c.tensors.layout).toBe('legacy');
      expect(c.tiedEmbeddings).toBe(true);
      expect(c.config.text).toMatchObject({ hiddenSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 16, vocabSize: 512, ropeTheta: 1e6 });
      expect(c.config.vision).toMatchObject({ hiddenSize: 32, numLayers: 2, numHeads: 2, imageSize: 56, patchSize: 14, gridSize: 4, hiddenAct: 'gelu_tanh' });
      expect(c.config).toMatchObject({ imageTokenId: 503, imageTokens: 16, featureLayerIndex: 2, selectStrategy: 'full', projectorAct: 'gelu_erf' });
      expect(c.tokens).toEqual({ imageTokenId: 503, eosTokenIds: [502], padTokenId: 500, bosTokenId: 500 });
      expect(c.chatTemplate).toContain("'<|im_start|>' + message['role'] + ' '");
      expect(c.tensors.read('language_model.embed_tokens.weight')).toHaveLength(512 * 64);
    } finally {
      c.close();
    }
  });

  it('gives the same tensors in both layouts, sharded or not, and widens bf16/fp16', () => {
    const base = openCheckpoint(gen({ layout: 'legacy' }));
    const current = openCheckpoint(gen({ layout: 'current', shards: 3 }));
    const bf16 = openCheckpoint(gen({ dtype: 'BF16', layout: 'current' }));
    const fp16 = openCheckpoint(gen({ dtype: 'F16', shards: 2 }));
    try {
      expect(current.tensors.layout).toBe('current');
      expect(current.files.weights.endsWith('model.safetensors.index.json')).toBe(true);
      for (const name of ['language_model.layers.1.self_attn.k_proj.weight', 'vision_tower.encoder.layers.0.mlp.fc2.bias',
        'multi_modal_projector.linear_2.weight', 'language_model.embed_tokens.weight']) {
        const a = base.tensors.read(name);
        expect(current.tensors.read(name)).toEqual(a);
        const b = bf16.tensors.read(name);
        const h = fp16.tensors.read(name);
        let bfOk = true;
        let fpOk = true;
        for (let i = 0; i < a.length; i++) {
          bfOk &&= Math.abs(b[i]! - a[i]!) <= Math.abs(a[i]!) * 2 ** -8;
          fpOk &&= Math.abs(h[i]! - a[i]!) <= Math.abs(a[i]!) * 2 ** -11 + 2 ** -25;
        }
        expect(bfOk).toBe(true);
        expect(fpOk).toBe(true);
        expect(b).not.toEqual(a); // really rounded
      }
    } finally {
      for (const c of [base, current, bf16, fp16]) c.close();
    }
  });

  it('applies HF defaults: kv heads, eps, head_dim, strategy, feature layer', () => {
    const dir = gen();
    editJson(join(dir, 'config.json'), (j) => {
      delete j.text_config.num_key_value_heads; // tiny default is GQA 4/2: now it reads as 4/4
      delete j.text_config.rms_norm_eps;
      delete j.text_config.rope_theta;
      delete j.vision_config.layer_norm_eps;
      delete j.vision_config.hidden_act;
      delete j.vision_feature_select_strategy;
      delete j.vision_feature_layer;
      delete j.projector_hidden_act;
    });
    // num_key_value_heads now defaults to 4 heads: k_proj must be [64, 64]
    expectInvalid(dir, /tensor language_model\.model\.layers\.0\.self_attn\.k_proj\.weight has shape \[32, 64\], expected \[64, 64\]/);
    const mha = gen({ text: { numKvHeads: 4 } });
    editJson(join(mha, 'config.json'), (j) => {
      delete j.text_config.num_key_value_heads;
      delete j.text_config.rms_norm_eps;
      delete j.vision_feature_select_strategy;
      delete j.vision_feature_layer;
    });
    const c = openCheckpoint(mha);
    expect(c.config.text.numKvHeads).toBe(4);
    expect(c.config.text.rmsNormEps).toBe(1e-6);
    expect(c.config.selectStrategy).toBe('default');
    expect(c.config.featureLayer).toBe(-2);
    expect(c.config.featureLayerIndex).toBe(1);
    expect(c.config.imageTokens).toBe(15);
    c.close();
  });

  it('reads an image size that 14 does not divide, head_dim, eos lists, untied lm_head', () => {
    const dir = gen({ vision: { imageSize: 60 }, text: { headDim: 8 }, eosAsList: true, tieWordEmbeddings: false, layout: 'current' });
    const c = openCheckpoint(dir);
    expect(c.config.vision.gridSize).toBe(4);
    expect(c.config.text.headDim).toBe(8);
    expect(c.tokens.eosTokenIds).toEqual([502, 500]);
    expect(c.tiedEmbeddings).toBe(false);
    expect(c.tensors.fileName('lm_head.weight')).toBe('lm_head.weight');
    c.close();
    const legacyUntied = gen({ tieWordEmbeddings: false, tieLocation: 'top' });
    const c2 = openCheckpoint(legacyUntied);
    expect(c2.tiedEmbeddings).toBe(false);
    expect(c2.tensors.fileName('lm_head.weight')).toBe('language_model.lm_head.weight');
    c2.close();
    // no tie flag anywhere: tied when the file has no lm_head
    const none = gen({ tieLocation: 'none' });
    const c3 = openCheckpoint(none);
    expect(c3.tiedEmbeddings).toBe(true);
    c3.close();
  });

  it('finds the chat template in chat_template.json, chat_template.jinja or tokenizer_config.json', () => {
    const onlyTok = gen({ templateLocation: 'tokenizer_config.json', chatTemplate: 'fixture' });
    const c = openCheckpoint(onlyTok);
    expect(c.files.chatTemplateSource.endsWith('tokenizer_config.json')).toBe(true);
    expect(c.chatTemplate).toContain("+ ' '");
    c.close();
    const jinja = gen({ templateLocation: 'chat_template.json' });
    const tpl = JSON.parse(readFileSync(join(jinja, 'chat_template.json'), 'utf8')).chat_template as string;
    unlinkSync(join(jinja, 'chat_template.json'));
    writeFileSync(join(jinja, 'chat_template.jinja'), tpl);
    const c2 = openCheckpoint(jinja);
    expect(c2.chatTemplate).toBe(tpl);
    c2.close();
    unlinkSync(join(jinja, 'chat_template.jinja'));
    expectInvalid(jinja, /chat template is missing/);
  });

  it('ignores other files in the folder', () => {
    const dir = gen();
    writeFileSync(join(dir, 'README.md'), '# hi');
    writeFileSync(join(dir, 'pytorch_model.bin'), 'junk');
    openCheckpoint(dir).close();
  });

  it('names the missing file', () => {
    for (const file of ['config.json', 'tokenizer.json', 'preprocessor_config.json']) {
      const dir = gen();
      unlinkSync(join(dir, file));
      expectInvalid(dir, new RegExp(`^${file.replace('.', '\\.')} is missing`));
    }
    const noWeights = gen();
    unlinkSync(join(noWeights, 'model.safetensors'));
    expectInvalid(noWeights, /^model\.safetensors is missing/);
    const sharded = gen({ shards: 2 });
    unlinkSync(join(sharded, 'model-00002-of-00002.safetensors'));
    expectInvalid(sharded, /model-00002-of-00002\.safetensors is missing/);
    const broken = gen();
    writeFileSync(join(broken, 'config.json'), '{"model_type": "llava",');
    expectInvalid(broken, /^config\.json: not valid JSON/);
    const truncated = gen();
    const bytes = readFileSync(join(truncated, 'model.safetensors'));
    writeFileSync(join(truncated, 'model.safetensors'), bytes.subarray(0, 20));
    expectInvalid(truncated, /model\.safetensors: /);
  });

  it('names the missing or invalid field', () => {
    const cases: Array<[(j: Record<string, any>) => void, RegExp]> = [
      [(j) => delete j.text_config.num_attention_heads, /^config\.json: text_config\.num_attention_heads is missing$/],
      [(j) => delete j.text_config.hidden_size, /^config\.json: text_config\.hidden_size is missing$/],
      [(j) => delete j.vision_config.patch_size, /^config\.json: vision_config\.patch_size is missing$/],
      [(j) => delete j.vision_config, /^config\.json: vision_config is missing$/],
      [(j) => delete j.image_token_index, /^config\.json: image_token_index is missing$/],
      [(j) => (j.text_config.num_key_value_heads = 'two'), /^config\.json: text_config\.num_key_value_heads is invalid/],
      [(j) => (j.vision_feature_layer = [-2, -1]), /^config\.json: vision_feature_layer is a list/],
      [(j) => (j.vision_feature_layer = -5), /vision_feature_layer -5 is out of range/],
      [(j) => (j.vision_feature_select_strategy = 'cls'), /^config\.json: vision_feature_select_strategy is invalid/],
      [(j) => (j.text_config.hidden_act = 'mish'), /text_config\.hidden_act "mish" is not supported/],
      [(j) => (j.text_config.model_type = 'llama'), /text_config\.model_type is "llama"/],
      [(j) => (j.text_config.num_key_value_heads = 3), /not a multiple of num_key_value_heads/],
    ];
    for (const [edit, message] of cases) {
      const dir = gen();
      editJson(join(dir, 'config.json'), edit);
      expectInvalid(dir, message);
    }
    const eos = gen({ generationConfig: false });
    editJson(join(eos, 'config.json'), (j) => delete j.text_config.eos_token_id);
    expectInvalid(eos, /text_config\.eos_token_id is missing/);
    const eos2 = gen();
    editJson(join(eos2, 'config.json'), (j) => delete j.text_config.eos_token_id);
    editJson(join(eos2, 'generation_config.json'), (j) => delete j.eos_token_id);
    expectInvalid(eos2, /^generation_config\.json: eos_token_id is missing/);
    const pre = gen();
    editJson(join(pre, 'preprocessor_config.json'), (j) => (j.image_mean = [0.5, 0.5]));
    expectInvalid(pre, /^preprocessor_config\.json: image_mean has 2 values/);
  });

  it('names a missing tensor in the checkpoint\'s own layout, and a wrong shape', () => {
    expectInvalid(gen({ omitTensors: ['language_model.layers.1.self_attn.v_proj.bias'] }),
      /^model\.safetensors: tensor language_model\.model\.layers\.1\.self_attn\.v_proj\.bias is missing$/);
    expectInvalid(gen({ omitTensors: ['vision_tower.encoder.layers.0.self_attn.out_proj.weight'], layout: 'current', shards: 2 }),
      /^model\.safetensors\.index\.json: tensor model\.vision_tower\.vision_model\.encoder\.layers\.0\.self_attn\.out_proj\.weight is missing$/);
    const untied = gen({ tieWordEmbeddings: false, omitTensors: ['lm_head.weight'] });
    expectInvalid(untied, /tensor language_model\.lm_head\.weight is missing/);
    const shape = gen();
    editJson(join(shape, 'config.json'), (j) => (j.text_config.intermediate_size = 96));
    expectInvalid(shape, /mlp\.gate_proj\.weight has shape \[128, 64\], expected \[96, 64\]/);
  });
});

describe('generated checkpoints', () => {
  it('have a toy tokenizer that @huggingface/tokenizers loads: id = byte, specials at S..S+3', () => {
    const dir = gen({ text: { vocabSize: 300 } });
    const tok = new Tokenizer(JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')),
      JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8')));
    const text = '<|im_start|>user\n<image>\nWhat is 你好 😀?<|im_end|><|endoftext|>';
    const ids = tok.encode(text).ids;
    const bytes = [...Buffer.from('user\n')];
    expect(ids.slice(0, 7)).toEqual([289, ...bytes, 291]);
    expect(ids.at(-2)).toBe(290);
    expect(ids.at(-1)).toBe(288);
    expect(tok.decode(ids, { skip_special_tokens: false })).toBe(text);
    // the fixture's tokenizer gives the same ids for text
    const fixtureTok = new Tokenizer(JSON.parse(readFileSync(join(TINY_A_DIR, 'tokenizer.json'), 'utf8')),
      JSON.parse(readFileSync(join(TINY_A_DIR, 'tokenizer_config.json'), 'utf8')));
    const plain = 'Hello, wörld! 广东话 123';
    expect(tok.encode(plain).ids).toEqual(fixtureTok.encode(plain).ids);
    expect(tok.encode(plain).ids).toEqual([...Buffer.from(plain)]);
  });

  it('ship the hub template (newlines, generation blocks) or the fixture one', () => {
    const hub = openCheckpoint(gen());
    const messages = [{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'Q?' }] },
      { role: 'assistant', content: [{ type: 'text', text: 'A.' }] }];
    expect(new Template(hub.chatTemplate).render({ messages, add_generation_prompt: false }))
      .toBe('<|im_start|>user\n<image>\nQ?<|im_end|>\n<|im_start|>assistant\nA.<|im_end|>\n');
    expect(hub.chatTemplate).toContain('{% generation %}');
    hub.close();
    const old = openCheckpoint(gen({ chatTemplate: 'fixture' }));
    const fixtureTemplate = JSON.parse(readFileSync(join(TINY_A_DIR, 'chat_template.json'), 'utf8')).chat_template;
    const msgs = [{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'What is in this picture?' }] }];
    expect(new Template(old.chatTemplate).render({ messages: msgs, add_generation_prompt: true }))
      .toBe(new Template(fixtureTemplate).render({ messages: msgs, add_generation_prompt: true }));
    old.close();
  });

  it('are deterministic per seed and tensor', () => {
    const a = gen({ seed: 7 });
    const b = gen({ seed: 7, omitTensors: ['vision_tower.post_layernorm.bias'] });
    const c = gen({ seed: 8 });
    expect(readFileSync(join(a, 'config.json'))).toEqual(readFileSync(join(b, 'config.json')));
    const [ca, cb, cc] = [a, b, c].map((d) => openCheckpoint(d));
    const name = 'language_model.layers.0.mlp.up_proj.weight';
    expect(cb!.tensors.read(name)).toEqual(ca!.tensors.read(name));
    expect(cc!.tensors.read(name)).not.toEqual(ca!.tensors.read(name));
    for (const ch of [ca, cb, cc]) ch!.close();
  });
});
