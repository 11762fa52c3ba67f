// The benchmark's peer: @huggingface/transformers (transformers.js) running
// LlavaForConditionalGeneration on a folder written by models/export/transformers-js.ts (the
// same weights as the vistyle build beside it). Its own tokenizer and image processor prepare
// the inputs; the prompt text is the checkpoint's chat template rendered with the same messages
// vistyle renders (one picture, then the question), the image token expanded to one per feature
// row as LlavaProcessor does. Greedy decoding; a streamer timestamps every generated token.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Template } from '@huggingface/jinja';
import {
  AutoImageProcessor, AutoTokenizer, LlavaForConditionalGeneration, RawImage, env,
  type PreTrainedModel, type PreTrainedTokenizer,
} from '@huggingface/transformers';
import { PEER_DTYPES, type PeerDtype } from '../models/export/transformers-js.js';

export interface PeerRun {
  tokens: number[];
  promptTokens: number;
  /** From the picture's bytes to the first generated token. */
  ttftMs: number;
  /** Generated tokens after the first, per second. */
  tokensPerSecond: number;
}

export interface Peer {
  generate(image: Uint8Array, question: string, maxNewTokens: number): Promise<PeerRun>;
  close(): Promise<void>;
}

interface PeerConfig {
  image_token_index: number;
  image_seq_length?: number;
  vision_config: { image_size: number; patch_size: number };
  vision_feature_select_strategy?: string;
}

export async function loadPeer(dir: string, dtype: PeerDtype, threads: number): Promise<Peer> {
  // local files only: nothing is fetched, nothing is cached elsewhere
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.useFSCache = false;
  const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as PeerConfig;
  const template = new Template((JSON.parse(readFileSync(join(dir, 'chat_template.json'), 'utf8')) as { chat_template: string }).chat_template);
  const tokenizer = (await AutoTokenizer.from_pretrained(dir, { local_files_only: true })) as PreTrainedTokenizer;
  const processor = await AutoImageProcessor.from_pretrained(dir, { local_files_only: true });
  const model = (await LlavaForConditionalGeneration.from_pretrained(dir, {
    local_files_only: true,
    device: 'cpu',
    dtype: PEER_DTYPES[dtype].dtype,
    session_options: { intraOpNumThreads: threads, interOpNumThreads: 1, logSeverityLevel: 3 },
  })) as PreTrainedModel;
  const grid = Math.floor(config.vision_config.image_size / config.vision_config.patch_size);
  const imageTokens = config.image_seq_length ?? grid * grid - (config.vision_feature_select_strategy === 'default' ? 1 : 0);
  const imageTokenText = tokenizer.decode([config.image_token_index]);

  return {
    async generate(image, question, maxNewTokens) {
      const t0 = performance.now();
      const raw = await RawImage.fromBlob(new Blob([image]));
      const { pixel_values } = await processor(raw);
      const text = template
        .render({
          messages: [{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: question }] }],
          add_generation_prompt: true,
        })
        .split(imageTokenText)
        .join(imageTokenText.repeat(imageTokens));
      const inputs = tokenizer(text, { add_special_tokens: false });
      const stamps: number[] = [];
      const tokens: number[] = [];
      let prompt = true;
      const streamer = {
        put(ids: bigint[][]) {
          if (prompt) {
            prompt = false; // generate() first puts the prompt
            return;
          }
          stamps.push(performance.now());
          tokens.push(Number(ids[0]![0]));
        },
        end() {},
      };
      await model.generate({
        ...inputs,
        pixel_values,
        max_new_tokens: maxNewTokens,
        do_sample: false,
        streamer,
      } as unknown as Parameters<PreTrainedModel['generate']>[0]);
      const ttftMs = stamps[0]! - t0;
      const decodeMs = stamps.at(-1)! - stamps[0]!;
      return {
        tokens,
        promptTokens: (inputs.input_ids as { dims: number[] }).dims[1]!,
        ttftMs,
        tokensPerSecond: tokens.length > 1 && decodeMs > 0 ? ((tokens.length - 1) / decodeMs) * 1000 : 0,
      };
    },
    async close() {
      await model.dispose();
    },
  };
}
