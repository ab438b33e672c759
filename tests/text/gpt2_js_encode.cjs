// The JavaScript GPT-2 encoder of the npm package gpt-3-encoder (a devDependency of web/, installed by
// `scripts/web.sh setup`) on the tokenizer test corpus, for tests/text/gpt2_tokenizer_js_test.cpp.
//
//   node gpt2_js_encode.cjs PACKAGE_DIR CORPUS_JSON   prints {"ids": [[...], ...]} for corpus.strings, then
//                                                     corpus.js_differs[i].text, in that order
// Nothing is installed here: a missing package is an error that says how to install it.
'use strict';
const fs = require('fs');
const path = require('path');

if (process.argv.length !== 4) {
  process.stderr.write('usage: node gpt2_js_encode.cjs PACKAGE_DIR CORPUS_JSON\n');
  process.exit(2);
}
const packageDir = process.argv[2];
if (!fs.existsSync(path.join(packageDir, 'Encoder.js'))) {
  process.stderr.write(`gpt2_js_encode: ${packageDir}: no gpt-3-encoder package there; run scripts/web.sh setup (npm ci in web/)\n`);
  process.exit(2);
}
const { encode } = require(path.resolve(packageDir));
const corpus = JSON.parse(fs.readFileSync(process.argv[3], 'utf-8'));
const texts = corpus.strings.concat((corpus.js_differs || []).map((d) => d.text));
process.stdout.write(JSON.stringify({ ids: texts.map((t) => encode(t)) }) + '\n');
