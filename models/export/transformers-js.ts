// For the benchmark only: writes a model folder in the layout @huggingface/transformers
// (transformers.js) loads for LlavaForConditionalGeneration, from the same checkpoint and the
// same graph blocks vistyle builds, so that the bench can run both on identical weights:
//   config.json, generation_config.json, preprocessor_config.json, tokenizer.json,
//   tokenizer_config.json, chat_template.json (copies of the checkpoint's)
//   onnx/vision_encoder<suffix>.onnx   pixel_values [B,3,S,S] -> image_features [B,N,D]
//   onnx/embed_tokens<suffix>.onnx     input_ids [B,T] -> inputs_embeds [B,T,D]
//   onnx/decoder_model_merged<suffix>.onnx  (peer-decoder.ts: past_key_values.<i>.key/value ->
//                                            present.<i>.key/value, num_logits_to_keep)
// <suffix> is transformers.js's file suffix for the dtype it is asked for: '' (fp32), '_q4'
// (int4), '_quantized' (q8 = our int8). Weights above 1 GiB per graph go to <graph>.onnx.data,
// which onnxruntime finds next to the model file (transformers.js passes local paths in Node).
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { openCheckpoint } from '../checkpoint/reader.js';
import { buildEmbedGraph } from '../graphs/embed.js';
import { buildVisionGraph } from '../graphs/vision.js';
import type { QuantSpec } from '../graphs/quantize.js';
import { resolvePrecision } from '../build/build.js';
import { buildPeerDecoderGraph } from './peer-decoder.js';

export type PeerDtype = 'fp32' | 'int8' | 'int4';

/** transformers.js's dtype name and file suffix for each of our dtypes. */
export const PEER_DTYPES: Record<PeerDtype, { dtype: 'fp32' | 'q8' | 'q4'; suffix: string }> = {
  fp32: { dtype: 'fp32', suffix: '' },
  int8: { dtype: 'q8', suffix: '_quantized' },
  int4: { dtype: 'q4', suffix: '_q4' },
};

export interface PeerExportOptions {
  checkpointDir: string;
  outDir: string;
  dtype: PeerDtype;
  blockSize?: number;
  accuracyLevel?: number;
  externalDataThreshold?: number;
  onProgress?: (message: string) => void;
}

export function exportTransformersJs(options: PeerExportOptions): void {
  const { quant } = resolvePrecision({
    dtype: options.dtype,
    blockSize: options.dtype === 'fp32' ? undefined : options.blockSize,
    accuracyLevel: options.dtype === 'fp32' ? undefined : options.accuracyLevel,
  });
  const checkpoint = openCheckpoint(options.checkpointDir);
  try {
    const onnxDir = join(options.outDir, 'onnx');
    mkdirSync(onnxDir, { recursive: true });
    const suffix = PEER_DTYPES[options.dtype].suffix;
    const write = (name: string, build: (q: QuantSpec | null) => { g: { save: (path: string, o: object) => unknown } }): void => {
      options.onProgress?.(`peer ${name}${suffix}.onnx`);
      build(quant).g.save(join(onnxDir, `${name}${suffix}.onnx`), {
        externalDataThreshold: options.externalDataThreshold,
        docString: `vistyle bench peer ${name} from ${basename(checkpoint.dir)}`,
      });
    };
    write('vision_encoder', (q) => buildVisionGraph(checkpoint, 'fp32', new Set(), q));
    write('embed_tokens', () => buildEmbedGraph(checkpoint, 'fp32'));
    write('decoder_model_merged', (q) => buildPeerDecoderGraph(checkpoint, q));

    const f = checkpoint.files;
    for (const file of [f.config, f.generationConfig, f.preprocessorConfig, f.tokenizer, f.tokenizerConfig, f.processorConfig]) {
      if (file && existsSync(file)) copyFileSync(file, join(options.outDir, basename(file)));
    }
    writeFileSync(join(options.outDir, 'chat_template.json'), `${JSON.stringify({ chat_template: checkpoint.chatTemplate }, null, 2)}\n`);
  } finally {
    checkpoint.close();
  }
}
