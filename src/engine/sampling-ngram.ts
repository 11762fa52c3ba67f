// No-repeat n-gram ban with the semantics of transformers' NoRepeatNGramLogitsProcessor: the next
// token may not complete an n-gram that already occurs in the sequence. Kept incrementally (each
// new token adds one n-gram), so a step costs one map lookup instead of a scan of the sequence.

export class NgramBan {
  private readonly n: number;
  /** (n-1)-gram prefix -> tokens that followed it. */
  private readonly followers = new Map<string, Set<number>>();
  private readonly tokens: number[] = [];

  constructor(n: number) {
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`n-gram size must be a positive integer, got ${n}`);
    this.n = n;
  }

  get length(): number {
    return this.tokens.length;
  }

  push(token: number): void {
    this.tokens.push(token);
    const len = this.tokens.length;
    if (len < this.n) return;
    const key = this.keyAt(len - this.n, len - 1);
    let set = this.followers.get(key);
    if (!set) {
      set = new Set();
      this.followers.set(key, set);
    }
    set.add(token);
  }

  /** Tokens banned as the next one (undefined when none). */
  banned(): ReadonlySet<number> | undefined {
    const len = this.tokens.length;
    // transformers: no ban until the sequence holds at least n-1 tokens
    if (len + 1 < this.n) return undefined;
    return this.followers.get(this.keyAt(len - this.n + 1, len));
  }

  private keyAt(start: number, end: number): string {
    let key = '';
    for (let i = start; i < end; i++) key += `${this.tokens[i]},`;
    return key;
  }
}
