// The known name closest to a misspelt one (`VISTYLE_PROVDER` -> `VISTYLE_PROVIDER`).

/** Levenshtein distance (insertions, deletions, substitutions). */
export function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + cost);
    }
    previous = current;
  }
  return previous[b.length]!;
}

/** The closest of `known` to `name`, when close enough to be a likely typo. */
export function closestName(name: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of known) {
    const distance = editDistance(name, candidate);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  // a few letters off, or one name inside the other (VISTYLE_TOKEN vs TELEGRAM_BOT_TOKEN is not)
  const limit = Math.max(2, Math.floor(name.length / 4));
  return best !== undefined && bestDistance <= limit ? best : undefined;
}
