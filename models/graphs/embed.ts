// embed.onnx: input_ids int64 [B,T] -> inputs_embeds float32 [B,T,D] (rows of embed_tokens; in
// fp16 builds the table is float16 and the rows are widened to float32).
import type { Checkpoint } from '../checkpoint/reader.js';
import { attr, GraphBuilder } from '../onnx/builder.js';
import { DataType } from '../onnx/schema.js';
import { makeContext, tensorInit, toFloat, type BuildDtype, type GraphContext } from './common.js';

export function buildEmbedGraph(checkpoint: Checkpoint, dtype: BuildDtype): GraphContext {
  const g = new GraphBuilder('vistyle_embed');
  const ctx = makeContext(g, checkpoint, dtype, 'decoder', new Set());
  const ids = g.input('input_ids', DataType.INT64, ['batch', 'sequence']);
  const table = tensorInit(ctx, 'language_model.embed_tokens.weight', ctx.compute);
  const rows = g.node('Gather', [table, ids], { axis: attr.int(0) });
  g.output(toFloat(ctx, rows), 'inputs_embeds', DataType.FLOAT, ['batch', 'sequence', checkpoint.config.text.hiddenSize]);
  return ctx;
}
