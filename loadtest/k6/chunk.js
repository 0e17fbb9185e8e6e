// k6: 100 KB session-chunk occurrences (gen.py's chunk-100k). The token must allow
// occurrences. Not run here.
//   k6 run -e BASE_URL=http://127.0.0.1:8080 -e VUS=16 loadtest/k6/chunk.js
import { kind, options as makeOptions } from './lib.js';

export const options = makeOptions();
const send = kind('chunk-100k', { file: 'chunk-100k.ndjson', path: '/v1/occurrences', events: 1 });

export default function () {
  send();
}
