// A small seeded RNG for random checkpoints: sfc32 uniform + polar-method normals. Streams are keyed
// by (seed, name) so that a tensor's values do not depend on which other tensors are generated.

function fnv1a(text: string, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  private spare: number | undefined;

  constructor(seed: number, stream = '') {
    this.a = fnv1a(stream, seed);
    this.b = fnv1a(stream, seed ^ 0x9e3779b9);
    this.c = fnv1a(stream, seed ^ 0x7f4a7c15);
    this.d = 1;
    for (let i = 0; i < 12; i++) this.nextUint32();
  }

  nextUint32(): number {
    // sfc32
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0;
    this.c = (this.c + t) >>> 0;
    return t;
  }

  /** Uniform in [0, 1). */
  uniform(): number {
    return this.nextUint32() / 4294967296;
  }

  /** Standard normal (Marsaglia's polar method). */
  normal(): number {
    if (this.spare !== undefined) {
      const s = this.spare;
      this.spare = undefined;
      return s;
    }
    for (;;) {
      const u = this.uniform() * 2 - 1;
      const v = this.uniform() * 2 - 1;
      const s = u * u + v * v;
      if (s === 0 || s >= 1) continue;
      const f = Math.sqrt((-2 * Math.log(s)) / s);
      this.spare = v * f;
      return u * f;
    }
  }

  /** Fills a new Float32Array with mean + std * N(0, 1): normal()'s sequence, state in locals. */
  normalArray(n: number, std: number, mean = 0): Float32Array {
    const out = new Float32Array(n);
    let i = 0;
    if (this.spare !== undefined && n > 0) {
      out[i++] = mean + std * this.spare;
      this.spare = undefined;
    }
    let a = this.a;
    let b = this.b;
    let c = this.c;
    let d = this.d;
    while (i < n) {
      let t = (((a + b) >>> 0) + d) >>> 0;
      d = (d + 1) >>> 0;
      a = b ^ (b >>> 9);
      b = (c + (c << 3)) >>> 0;
      c = ((c << 21) | (c >>> 11)) >>> 0;
      c = (c + t) >>> 0;
      const u = (t / 4294967296) * 2 - 1;
      t = (((a + b) >>> 0) + d) >>> 0;
      d = (d + 1) >>> 0;
      a = b ^ (b >>> 9);
      b = (c + (c << 3)) >>> 0;
      c = ((c << 21) | (c >>> 11)) >>> 0;
      c = (c + t) >>> 0;
      const v = (t / 4294967296) * 2 - 1;
      const s = u * u + v * v;
      if (s === 0 || s >= 1) continue;
      const f = Math.sqrt((-2 * Math.log(s)) / s);
      out[i++] = mean + std * u * f;
      if (i < n) out[i++] = mean + std * v * f;
      else this.spare = v * f;
    }
    this.a = a;
    this.b = b;
    this.c = c;
    this.d = d;
    return out;
  }
}
