// Fuzz child (test/fuzz/corrupt-files.test.ts): loads corrupt model files one after another in
// this process and reports each outcome as one line of JSON on stdout.
//
//   node child.mjs CASES.json      (env FUZZ_LIB: a transpiled copy of lib/; CANOPY_ADDON_PATH)
//
// CASES.json: { references: { name: path }, cases: [{ id, path, reference }] }. Before a case
// it prints "START <id>" so the parent can name a case that crashed or hung the process.
// Outcome per case:
//   { id, outcome: 'error', canopy: boolean, code, name, message }     the load (or the model) failed
//   { id, outcome: 'loaded', sameAsReference, finishReason, tokens, vocab }
// A loaded file is turned into a model and generates 8 tokens greedily from BOS; sameAsReference
// says whether its config and every tensor's bytes equal the reference file's (then the
// parent requires the reference's tokens).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const lib = process.env.FUZZ_LIB;
const load = (p) => import(pathToFileURL(join(lib, p)).href);
const { loadWeights } = await load('model/weights.js');
const { Model } = await load('model/model.js');
const { generate } = await load('generate.js');
const { CanopyError } = await load('errors.js');

const spec = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const refs = new Map();

function bytesOf(t) {
  const a = t.toArray();
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

function referenceOf(name) {
  if (!refs.has(name)) {
    const w = loadWeights(spec.references[name]);
    const tensors = new Map([...w.tensors].map(([k, t]) => [k, Buffer.from(bytesOf(t))]));
    refs.set(name, { config: JSON.stringify(w.config), tensors });
    w.dispose();
  }
  return refs.get(name);
}

async function runCase(c) {
  let w;
  try {
    w = loadWeights(c.path);
  } catch (e) {
    return failure(c, e);
  }
  let same = false;
  try {
    if (c.reference) {
      const ref = referenceOf(c.reference);
      same = JSON.stringify(w.config) === ref.config && w.tensors.size === ref.tensors.size &&
        [...w.tensors].every(([k, t]) => ref.tensors.has(k) && ref.tensors.get(k).equals(bytesOf(t)));
    }
    const model = await Model.fromWeights(w, { backend: 'cpu' });
    w.dispose();
    w = undefined;
    try {
      const r = await generate({ model, tokens: [1 % model.config.vocabSize], maxTokens: 8, stopAtEos: false });
      return { id: c.id, outcome: 'loaded', sameAsReference: same, finishReason: r.finishReason, tokens: r.tokens, vocab: model.config.vocabSize };
    } finally {
      model.dispose();
    }
  } catch (e) {
    return failure(c, e);
  } finally {
    w?.dispose();
  }
}

function failure(c, e) {
  return {
    id: c.id,
    outcome: 'error',
    canopy: e instanceof CanopyError,
    code: e?.code,
    name: e?.constructor?.name,
    message: String(e?.message ?? e).slice(0, 300),
  };
}

for (const c of spec.cases) {
  process.stdout.write(`START ${c.id}\n`);
  const r = await runCase(c);
  process.stdout.write(`RESULT ${JSON.stringify(r)}\n`);
}
