// Partial selection of the largest logits: a bounded min-heap over the whole vocabulary keeps the
// best `k` (value, index) pairs, then sorts them in place, best first. For V = 152000 and k = 20
// this is one pass of comparisons against the heap's minimum — no full sort, and no allocation
// once the buffers have grown to the largest k asked for.

export class TopCandidates {
  /** Indices of the selected logits, best first (valid up to `size`). */
  indices = new Int32Array(64);
  /** Their values, best first (valid up to `size`). */
  values = new Float32Array(64);
  size = 0;

  /**
   * Selects the `k` largest finite-or-+Infinity entries of `logits` (-Infinity and NaN are never
   * selected). Ties keep the lower index first.
   */
  select(logits: Float32Array, k: number): void {
    if (k > this.indices.length) {
      let cap = this.indices.length;
      while (cap < k) cap *= 2;
      this.indices = new Int32Array(cap);
      this.values = new Float32Array(cap);
    }
    const idx = this.indices;
    const val = this.values;
    let size = 0;
    const n = logits.length;
    for (let i = 0; i < n; i++) {
      const v = logits[i]!;
      if (!(v > Number.NEGATIVE_INFINITY)) continue; // -Infinity (banned) and NaN
      if (size < k) {
        // sift up
        let c = size++;
        while (c > 0) {
          const p = (c - 1) >> 1;
          if (!worse(v, i, val[p]!, idx[p]!)) break;
          val[c] = val[p]!;
          idx[c] = idx[p]!;
          c = p;
        }
        val[c] = v;
        idx[c] = i;
      } else if (worse(val[0]!, idx[0]!, v, i)) {
        siftDown(val, idx, size, v, i);
      }
    }
    // Heap sort: repeatedly move the worst to the end -> best first.
    for (let end = size - 1; end > 0; end--) {
      const v = val[end]!;
      const i = idx[end]!;
      val[end] = val[0]!;
      idx[end] = idx[0]!;
      siftDown(val, idx, end, v, i);
    }
    this.size = size;
  }
}

/** a is worse than b: smaller value, or equal value and larger index. */
function worse(av: number, ai: number, bv: number, bi: number): boolean {
  return av < bv || (av === bv && ai > bi);
}

/** Places (v, i) at the root of the min-heap of `size` entries and restores the heap order. */
function siftDown(val: Float32Array, idx: Int32Array, size: number, v: number, i: number): void {
  let c = 0;
  for (;;) {
    const l = 2 * c + 1;
    if (l >= size) break;
    const r = l + 1;
    const m = r < size && worse(val[r]!, idx[r]!, val[l]!, idx[l]!) ? r : l;
    if (!worse(val[m]!, idx[m]!, v, i)) break;
    val[c] = val[m]!;
    idx[c] = idx[m]!;
    c = m;
  }
  val[c] = v;
  idx[c] = i;
}

/** Index of the largest logit (the first one on ties); NaN is never chosen; 0 if all are NaN. */
export function argmax(logits: Float32Array): number {
  let best = 0;
  let bestValue = Number.NEGATIVE_INFINITY;
  let found = false;
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i]!;
    if (v > bestValue || (!found && v === bestValue)) {
      best = i;
      bestValue = v;
      found = true;
    }
  }
  return best;
}

/**
 * Top-p and min-p over the whole vocabulary when the nucleus is too large for a sorted pool (a
 * flat distribution, top-k off): a weighted quickselect finds the smallest set of best tokens whose
 * probability mass reaches top_p in expected O(V), sorting only a group of tied logits when the
 * cut falls inside it (lower ids first). The kept tokens come out unordered.
 */
export class NucleusSelector {
  /** Kept token ids (valid up to `size`), in no particular order. */
  indices = new Int32Array(0);
  /** Unnormalised probability of each kept token (same order as `indices`). */
  weights = new Float64Array(0);
  size = 0;
  private weightOf = new Float64Array(0);

  /**
   * @param logits   all V logits; -Infinity and NaN are excluded
   * @param max      the largest logit (finite)
   * @param invT     1 / temperature
   * @param topP     mass to reach (1 = no top-p)
   * @param minP     drop tokens below minP x the best token's probability (0 = no min-p)
   */
  select(logits: Float32Array, max: number, invT: number, topP: number, minP: number): void {
    const vocab = logits.length;
    if (this.indices.length < vocab) {
      this.indices = new Int32Array(vocab);
      this.weights = new Float64Array(vocab);
      this.weightOf = new Float64Array(vocab);
    }
    const idx = this.indices;
    const w = this.weightOf;
    let n = 0;
    let total = 0;
    for (let i = 0; i < vocab; i++) {
      const v = logits[i]!;
      if (!(v > Number.NEGATIVE_INFINITY)) continue;
      const weight = Math.exp((v - max) * invT);
      w[i] = weight;
      total += weight;
      idx[n++] = i;
    }
    let kept = n;
    if (topP < 1) kept = this.cutAtMass(logits, n, topP * total);
    if (minP > 0) {
      // The best token's weight is exp(0) = 1, so the floor is minP itself.
      let m = 0;
      for (let j = 0; j < kept; j++) if (w[idx[j]!]! >= minP) idx[m++] = idx[j]!;
      kept = m;
    }
    for (let j = 0; j < kept; j++) this.weights[j] = w[idx[j]!]!;
    this.size = kept;
  }

  /** Reorders indices[0..n) so that the first `returned` of them are the nucleus. */
  private cutAtMass(logits: Float32Array, n: number, target: number): number {
    const idx = this.indices;
    const w = this.weightOf;
    let lo = 0;
    let hi = n;
    let need = target;
    while (lo < hi) {
      const pivot = logits[idx[lo + ((hi - lo) >> 1)]!]!;
      // Three-way partition of [lo, hi): greater | equal | less.
      let gt = lo;
      let i = lo;
      let lt = hi;
      while (i < lt) {
        const v = logits[idx[i]!]!;
        if (v > pivot) {
          swap(idx, gt++, i++);
        } else if (v < pivot) {
          swap(idx, i, --lt);
        } else {
          i++;
        }
      }
      let massGreater = 0;
      for (let j = lo; j < gt; j++) massGreater += w[idx[j]!]!;
      if (massGreater >= need && gt > lo) {
        hi = gt; // the cut is among the greater ones
        continue;
      }
      need -= massGreater;
      // The equal group: lower ids first, keep while the mass before is below what is needed.
      idx.subarray(gt, lt).sort();
      let acc = 0;
      let j = gt;
      while (j < lt && acc < need) acc += w[idx[j++]!]!;
      if (acc >= need || lt === hi) return j;
      need -= acc;
      lo = lt;
    }
    return lo;
  }
}

function swap(a: Int32Array, i: number, j: number): void {
  const t = a[i]!;
  a[i] = a[j]!;
  a[j] = t;
}
