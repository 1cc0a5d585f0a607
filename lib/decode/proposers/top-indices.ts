/** Indices of the k largest values, largest first (ties: lower index first). O(n k). */
export function topIndices(values: ArrayLike<number>, k: number): number[] {
  const best: number[] = [];
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (best.length === k && !(v > values[best[k - 1]!]!)) continue;
    // Insert after every kept index with a value >= v (earlier indices win ties), keep k.
    let pos = best.length;
    while (pos > 0 && v > values[best[pos - 1]!]!) pos--;
    best.splice(pos, 0, i);
    if (best.length > k) best.pop();
  }
  return best;
}
