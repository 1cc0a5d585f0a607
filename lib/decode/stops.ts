/** Stop strings while streaming: the tail of the text that could still begin one is held back. */

/** Longest suffix of `text` that is a proper prefix of some stop string (held back while streaming). */
export function heldBack(text: string, stops: string[]): number {
  let keep = 0;
  for (const s of stops) {
    for (let k = Math.min(s.length - 1, text.length); k > keep; k--) {
      if (text.endsWith(s.slice(0, k))) {
        keep = k;
        break;
      }
    }
  }
  return keep;
}
