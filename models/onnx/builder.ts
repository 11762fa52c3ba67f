// A small ONNX graph-building API over the protobufjs schema in schema.ts: named inputs and
// outputs, nodes with unique output names, initializers whose data is produced lazily, and a
// streaming writer. The writer never holds more than one initializer's bytes: the ModelProto's
// small fields are encoded by protobufjs, then each initializer is encoded (by protobufjs, its
// raw_data bytes appended as a length-delimited field) and written in turn. Protobuf merges
// repeated fields across concatenated encodings, so the result is one valid ModelProto.
// Initializers can go to an external data file (`<model>.onnx.data`, offsets page-aligned), which
// onnxruntime resolves relative to the model file when the session is created from a path.
import { closeSync, openSync, writeSync } from 'node:fs';
import { basename } from 'node:path';
import protobuf from 'protobufjs';
import { AttributeType, DataType, type DataTypeId, GraphProto, ModelProto, TensorProto } from './schema.js';

export type Dim = number | string;
export type TensorValues = Float32Array | Uint16Array | BigInt64Array | Int32Array | Uint8Array;

export type AttrValue =
  | { kind: 'int'; value: number }
  | { kind: 'float'; value: number }
  | { kind: 'ints'; value: number[] }
  | { kind: 'floats'; value: number[] }
  | { kind: 'string'; value: string };

export const attr = {
  int: (value: number): AttrValue => ({ kind: 'int', value }),
  float: (value: number): AttrValue => ({ kind: 'float', value }),
  ints: (value: number[]): AttrValue => ({ kind: 'ints', value }),
  floats: (value: number[]): AttrValue => ({ kind: 'floats', value }),
  string: (value: string): AttrValue => ({ kind: 'string', value }),
};

interface NodeSpec {
  op: string;
  inputs: string[];
  outputs: string[];
  name: string;
  domain: string;
  attrs: Record<string, AttrValue>;
}

interface ValueSpec {
  name: string;
  elemType: DataTypeId;
  dims: Dim[];
}

export interface InitializerSpec {
  name: string;
  dataType: DataTypeId;
  dims: number[];
  /** Produces the values when the model is written (called once). */
  data: () => TensorValues;
  byteLength: number;
}

const BYTES: Record<number, number> = {
  [DataType.FLOAT]: 4,
  [DataType.FLOAT16]: 2,
  [DataType.BFLOAT16]: 2,
  [DataType.INT64]: 8,
  [DataType.INT32]: 4,
  [DataType.UINT8]: 1,
  [DataType.BOOL]: 1,
};

export class GraphBuilder {
  readonly name: string;
  private readonly nodes: NodeSpec[] = [];
  private readonly inputs: ValueSpec[] = [];
  private readonly outputs: ValueSpec[] = [];
  private readonly initializers: InitializerSpec[] = [];
  private readonly names = new Set<string>();
  private readonly constCache = new Map<string, string>();
  private counter = 0;
  private scope = '';

  constructor(name: string) {
    this.name = name;
  }

  get currentScope(): string {
    return this.scope;
  }

  /** Prefix for generated names (e.g. "layers.3/"), for readable graphs. */
  withScope<T>(scope: string, fn: () => T): T {
    const saved = this.scope;
    this.scope = scope;
    try {
      return fn();
    } finally {
      this.scope = saved;
    }
  }

  private claim(name: string): string {
    if (this.names.has(name)) throw new Error(`duplicate value name ${name}`);
    this.names.add(name);
    return name;
  }

  private fresh(hint: string): string {
    let name: string;
    do name = `${this.scope}${hint}_${this.counter++}`;
    while (this.names.has(name));
    return this.claim(name);
  }

  input(name: string, elemType: DataTypeId, dims: Dim[]): string {
    this.inputs.push({ name: this.claim(name), elemType, dims });
    return name;
  }

  /** Declares `value` as a graph output named `name` (an Identity node renames it if needed). */
  output(value: string, name: string, elemType: DataTypeId, dims: Dim[]): string {
    if (value !== name) {
      this.claim(name);
      this.nodes.push({ op: 'Identity', inputs: [value], outputs: [name], name: `${name}/identity`, domain: '', attrs: {} });
    }
    this.outputs.push({ name, elemType, dims });
    return name;
  }

  initializer(name: string, dataType: DataTypeId, dims: number[], data: () => TensorValues): string {
    const count = dims.reduce((a, b) => a * b, 1);
    this.initializers.push({ name: this.claim(name), dataType, dims, data, byteLength: count * BYTES[dataType]! });
    return name;
  }

  /** A small constant initializer, shared between identical requests. */
  constant(dataType: DataTypeId, dims: number[], values: number[]): string {
    const key = `${dataType}|${dims.join(',')}|${values.join(',')}`;
    const cached = this.constCache.get(key);
    if (cached) return cached;
    let name: string;
    do name = `const_${this.counter++}`;
    while (this.names.has(name));
    const make = (): TensorValues => {
      switch (dataType) {
        case DataType.FLOAT:
          return Float32Array.from(values);
        case DataType.INT64:
          return BigInt64Array.from(values.map((v) => BigInt(v)));
        case DataType.INT32:
          return Int32Array.from(values);
        case DataType.BOOL:
        case DataType.UINT8:
          return Uint8Array.from(values);
        default:
          throw new Error(`constant of data type ${dataType} needs explicit bits`);
      }
    };
    this.initializer(name, dataType, dims, make);
    this.constCache.set(key, name);
    return name;
  }

  f32(values: number | number[], dims?: number[]): string {
    const list = Array.isArray(values) ? values : [values];
    return this.constant(DataType.FLOAT, dims ?? (Array.isArray(values) ? [list.length] : []), list);
  }

  i64(values: number | number[], dims?: number[]): string {
    const list = Array.isArray(values) ? values : [values];
    return this.constant(DataType.INT64, dims ?? (Array.isArray(values) ? [list.length] : []), list);
  }

  /** Adds a node with `outputs` fresh outputs; returns their names. */
  nodeMulti(op: string, inputs: string[], outputs: number, attrs: Record<string, AttrValue> = {}, domain = ''): string[] {
    const outs = Array.from({ length: outputs }, () => this.fresh(op));
    this.nodes.push({ op, inputs, outputs: outs, name: `${outs[0]}/node`, domain, attrs });
    return outs;
  }

  /** Adds a single-output node and returns its output name. */
  node(op: string, inputs: string[], attrs: Record<string, AttrValue> = {}, domain = ''): string {
    return this.nodeMulti(op, inputs, 1, attrs, domain)[0]!;
  }

  get initializerBytes(): number {
    return this.initializers.reduce((s, i) => s + i.byteLength, 0);
  }

  get inputNames(): string[] {
    return this.inputs.map((i) => i.name);
  }

  /** Writes the model to `path`; returns the external data file's name when one was written. */
  save(path: string, options: SaveOptions = {}): SaveResult {
    return writeModel(this, path, options);
  }

  /** @internal */
  parts(): { nodes: NodeSpec[]; inputs: ValueSpec[]; outputs: ValueSpec[]; initializers: InitializerSpec[] } {
    return { nodes: this.nodes, inputs: this.inputs, outputs: this.outputs, initializers: this.initializers };
  }
}

export interface SaveOptions {
  /**
   * Initializers go to `<file>.data` when the graph's weights total more than this many bytes
   * (protobuf caps a message at 2 GB). Default 1 GiB. 0 sends every large tensor out.
   */
  externalDataThreshold?: number;
  /** Tensors smaller than this stay inline even in external-data mode. Default 1024 bytes. */
  externalMinBytes?: number;
  opsetVersion?: number;
  producer?: string;
  docString?: string;
  metadata?: Record<string, string>;
  /** Called after each initializer is written. */
  onTensor?: (done: number, total: number) => void;
}

export interface SaveResult {
  externalData: string | null;
  bytes: number;
  externalBytes: number;
}

function valueInfo(v: ValueSpec): Record<string, unknown> {
  return {
    name: v.name,
    type: {
      tensor_type: {
        elem_type: v.elemType,
        shape: { dim: v.dims.map((d) => (typeof d === 'number' ? { dim_value: d } : { dim_param: d })) },
      },
    },
  };
}

function attribute(name: string, a: AttrValue): Record<string, unknown> {
  switch (a.kind) {
    case 'int':
      return { name, type: AttributeType.INT, i: a.value };
    case 'float':
      return { name, type: AttributeType.FLOAT, f: a.value };
    case 'ints':
      return { name, type: AttributeType.INTS, ints: a.value };
    case 'floats':
      return { name, type: AttributeType.FLOATS, floats: a.value };
    case 'string':
      return { name, type: AttributeType.STRING, s: Buffer.from(a.value, 'utf8') };
  }
}

function fieldHeader(field: number, length: number): Uint8Array {
  return protobuf.Writer.create().uint32((field << 3) | 2).uint32(length).finish();
}

function bytesOf(values: TensorValues): Uint8Array {
  return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
}

const ALIGN = 4096;

function writeModel(graph: GraphBuilder, path: string, options: SaveOptions): SaveResult {
  const { nodes, inputs, outputs, initializers } = graph.parts();
  const threshold = options.externalDataThreshold ?? 2 ** 30;
  const minBytes = options.externalMinBytes ?? 1024;
  const external = graph.initializerBytes > threshold;
  const dataName = `${basename(path)}.data`;

  // Plan every initializer's TensorProto header (everything but raw_data) and its place.
  let extOffset = 0;
  const plans = initializers.map((init) => {
    const goesOut = external && init.byteLength >= minBytes;
    const fields: Record<string, unknown> = { name: init.name, dims: init.dims, data_type: init.dataType };
    if (goesOut) {
      extOffset = Math.ceil(extOffset / ALIGN) * ALIGN;
      fields.data_location = 1; // EXTERNAL
      fields.external_data = [
        { key: 'location', value: dataName },
        { key: 'offset', value: String(extOffset) },
        { key: 'length', value: String(init.byteLength) },
      ];
      const plan = { init, goesOut, extOffset, header: TensorProto.encode(TensorProto.fromObject(fields)).finish() };
      extOffset += init.byteLength;
      return plan;
    }
    return { init, goesOut, extOffset: 0, header: TensorProto.encode(TensorProto.fromObject(fields)).finish() };
  });
  const rawField = (n: number): number => fieldHeader(9, n).length + n;
  const tensorLength = (p: (typeof plans)[number]): number => p.header.length + (p.goesOut ? 0 : rawField(p.init.byteLength));

  const graphHead = GraphProto.encode(
    GraphProto.fromObject({
      name: graph.name,
      node: nodes.map((n) => ({
        input: n.inputs,
        output: n.outputs,
        name: n.name,
        op_type: n.op,
        domain: n.domain,
        attribute: Object.entries(n.attrs).map(([k, v]) => attribute(k, v)),
      })),
      input: inputs.map(valueInfo),
      output: outputs.map(valueInfo),
    }),
  ).finish();
  let graphLength = graphHead.length;
  for (const p of plans) {
    const t = tensorLength(p);
    graphLength += fieldHeader(5, t).length + t;
  }

  const opsets = [{ domain: '', version: options.opsetVersion ?? 17 }];
  if (nodes.some((n) => n.domain === 'com.microsoft')) opsets.push({ domain: 'com.microsoft', version: 1 });
  const modelHead = ModelProto.encode(
    ModelProto.fromObject({
      ir_version: 8,
      opset_import: opsets,
      producer_name: options.producer ?? 'vistyle',
      producer_version: '1',
      doc_string: options.docString ?? '',
      metadata_props: Object.entries(options.metadata ?? {}).map(([key, value]) => ({ key, value })),
    }),
  ).finish();

  const fd = openSync(path, 'w');
  const dataFd = external ? openSync(`${path}.data`, 'w') : undefined;
  let written = 0;
  let externalBytes = 0;
  const put = (bytes: Uint8Array): void => {
    let done = 0;
    while (done < bytes.length) done += writeSync(fd, bytes, done, Math.min(bytes.length - done, 1 << 30));
    written += bytes.length;
  };
  try {
    put(modelHead);
    put(fieldHeader(7, graphLength));
    put(graphHead);
    plans.forEach((p, i) => {
      const values = p.init.data();
      const bytes = bytesOf(values);
      if (bytes.length !== p.init.byteLength) {
        throw new Error(`initializer ${p.init.name}: ${bytes.length} bytes for dims [${p.init.dims.join(',')}]`);
      }
      put(fieldHeader(5, tensorLength(p)));
      put(p.header);
      if (p.goesOut) {
        let done = 0;
        while (done < bytes.length) {
          done += writeSync(dataFd!, bytes, done, Math.min(bytes.length - done, 1 << 30), p.extOffset + done);
        }
        externalBytes = Math.max(externalBytes, p.extOffset + bytes.length);
      } else {
        put(fieldHeader(9, bytes.length));
        put(bytes);
      }
      options.onTensor?.(i + 1, plans.length);
    });
  } finally {
    closeSync(fd);
    if (dataFd !== undefined) closeSync(dataFd);
  }
  return { externalData: external ? dataName : null, bytes: written, externalBytes };
}
