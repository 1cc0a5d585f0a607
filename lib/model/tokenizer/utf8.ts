/**
 * UTF-8 helpers for the byte-oriented tokenizers.
 *
 * Internally the llama2.c and GGUF SentencePiece tokenizers work on "binary strings": UTF-8
 * bytes stored one per UTF-16 code unit (0..255, as Latin-1 would store them). Concatenation
 * and Map lookups on binary strings are byte-exact, so vocabularies are matched byte for byte
 * even when a token's bytes are not valid UTF-8 on their own.
 */

const encoder = new TextEncoder();

/** UTF-8 bytes of `text` (lone surrogates become U+FFFD, as TextEncoder does). */
export function utf8Bytes(text: string): Uint8Array {
  return encoder.encode(text);
}

/** Bytes to a binary string (one code unit per byte). */
export function bytesToBinary(bytes: Uint8Array): string {
  let out = '';
  const CHUNK = 8192;
  for (let i = 0; i < bytes.length; i += CHUNK) {
    out += String.fromCharCode.apply(null, Array.from(bytes.subarray(i, i + CHUNK)));
  }
  return out;
}

/** A binary string back to bytes. */
export function binaryToBytes(binary: string): Uint8Array {
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}

/** The UTF-8 encoding of `text` as a binary string. */
export function toBinary(text: string): string {
  return bytesToBinary(utf8Bytes(text));
}

/**
 * Splits a binary string holding valid UTF-8 into one binary string per character (a lead
 * byte and its continuation bytes), as llama2.c's run.c and llama.cpp group bytes.
 */
export function splitUtf8Chars(binary: string): string[] {
  const chars: string[] = [];
  let i = 0;
  while (i < binary.length) {
    const lead = binary.charCodeAt(i);
    const n = lead < 0x80 ? 1 : lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
    chars.push(binary.slice(i, i + n));
    i += n;
  }
  return chars;
}

/** A byte-fallback token's text `<0xNN>` (two hex digits, either case); its byte, or undefined. */
export function parseByteToken(text: string): number | undefined {
  const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(text);
  return m ? parseInt(m[1]!, 16) : undefined;
}

/** `<0xNN>` for a byte, upper-case as SentencePiece writes it. */
export function byteTokenText(byte: number): string {
  return `<0x${byte.toString(16).toUpperCase().padStart(2, '0')}>`;
}

/**
 * Decodes UTF-8 bytes arriving in chunks: each `push` returns the characters completed so far
 * and keeps an incomplete trailing sequence for the next chunk. Built on the WHATWG decoder in
 * streaming mode, so the concatenated output is exactly the one-shot decode of all the bytes
 * (invalid bytes become U+FFFD at the same places). A leading U+FEFF is kept as text.
 */
export class Utf8Stream {
  private readonly decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

  push(bytes: Uint8Array): string {
    return bytes.length === 0 ? '' : this.decoder.decode(bytes, { stream: true });
  }

  /** Ends the stream: an incomplete trailing sequence becomes U+FFFD. The stream can be reused afterwards. */
  flush(): string {
    return this.decoder.decode();
  }
}

/** One-shot UTF-8 decode with the same rules as {@link Utf8Stream}. */
export function decodeUtf8(bytes: Uint8Array): string {
  return new TextDecoder('utf-8', { fatal: false, ignoreBOM: true }).decode(bytes);
}
