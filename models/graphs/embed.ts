// embed.onnx: input_ids int64 [B,T] -> inputs_embeds float32 [B,T,D] (rows of embed_tokens,
// widened to float32). The lookup is exact: the table is stored in the checkpoint's own 16-bit
// type when it has one (bf16 or fp16, half the bytes of float32 and bit-for-bit the checkpoint's
// values), whatever the build's dtype — quantized builds quantize only the lm_head MatMul of a
// tied embedding, never this table. fp16 builds of a bf16 or fp32 checkpoint store it in
// float16, their compute type, as before.
import type { Checkpoint } from '../checkpoint/reader.js';
import { float32ToBf16, float32ToHalf } from '../checkpoint/dtype.js';
import { attr, GraphBuilder } from '../onnx/builder.js';
import { DataType, type DataTypeId } from '../onnx/schema.js';
import { cast, makeContext, type BuildDtype, type GraphContext } from './common.js';

const TABLE = 'language_model.embed_tokens.weight';

/** The type the table is stored in. */
export function embedTableType(checkpoint: Checkpoint, dtype: BuildDtype): DataTypeId {
  const stored = checkpoint.tensors.dtype(TABLE);
  if (stored === 'F16') return DataType.FLOAT16;
  if (dtype === 'fp16') return DataType.FLOAT16;
  return stored === 'BF16' ? DataType.BFLOAT16 : DataType.FLOAT;
}

export function buildEmbedGraph(checkpoint: Checkpoint, dtype: BuildDtype): GraphContext {
  const g = new GraphBuilder('vistyle_embed');
  const ctx = makeContext(g, checkpoint, dtype, 'decoder', new Set());
  const ids = g.input('input_ids', DataType.INT64, ['batch', 'sequence']);
  const type = embedTableType(checkpoint, dtype);
  const suffix = type === DataType.BFLOAT16 ? '.bf16' : type === DataType.FLOAT16 ? '.f16' : '';
  const table = g.initializer(`${TABLE}${suffix}`, type, checkpoint.tensors.shape(TABLE), () => {
    const values = checkpoint.tensors.read(TABLE);
    return type === DataType.BFLOAT16 ? float32ToBf16(values) : type === DataType.FLOAT16 ? float32ToHalf(values) : values;
  });
  const rows = g.node('Gather', [table, ids], { axis: attr.int(0) });
  const widened = type === DataType.FLOAT ? rows : cast(ctx, rows, DataType.FLOAT);
  g.output(widened, 'inputs_embeds', DataType.FLOAT, ['batch', 'sequence', checkpoint.config.text.hiddenSize]);
  return ctx;
}
