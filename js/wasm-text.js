// The drop-in's wasm as the text of a string literal: scripts/build.mjs
// encodes it, js/drop-in.js decodes it.
//
// Not base64 (esbuild's binary loader): base64 packs 3 bytes into 4
// characters, so a byte sequence the wasm repeats is spelled differently at
// each of its 3 possible offsets, and gzip finds far fewer repetitions.
// Here every byte always becomes the same one or two characters, so the
// text repeats wherever the wasm does (bench/README.md has the figures).
// Bytes below 90 (most of a wasm's: opcodes, small numbers) are one
// character; the others are one of the last two characters followed by any.
// The alphabet is printable ASCII without `"` and `\` (nothing to escape in
// a string literal) and `<` (no `</script>` if a page inlines the file).
const ALPHABET = [...Array(95)]
  .map((_, i) => String.fromCharCode(32 + i))
  .filter((c) => !'"\\<'.includes(c))
  .join("");
const N = ALPHABET.length; // 92
const SINGLE = N - 2;

export function encode(bytes) {
  let text = "";
  for (const b of bytes) {
    const rest = b - SINGLE;
    text += b < SINGLE ? ALPHABET[b] : ALPHABET[SINGLE + Math.floor(rest / N)] + ALPHABET[rest % N];
  }
  return text;
}

export function decode(text) {
  const digit = new Uint8Array(128);
  for (let i = 0; i < N; i++) digit[ALPHABET.charCodeAt(i)] = i;
  const bytes = new Uint8Array(text.length);
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const d = digit[text.charCodeAt(i)];
    bytes[n++] = d < SINGLE ? d : SINGLE + (d - SINGLE) * N + digit[text.charCodeAt(++i)];
  }
  return bytes.slice(0, n);
}
