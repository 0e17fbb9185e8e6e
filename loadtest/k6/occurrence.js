// k6: 2.5 KB error occurrences (gen.py's occurrence-2k5). The token must allow occurrences.
// Not run here.
//   k6 run -e BASE_URL=http://127.0.0.1:8080 loadtest/k6/occurrence.js
import { kind, options as makeOptions } from './lib.js';

export const options = makeOptions();
const send = kind('occurrence-2k5', { file: 'occurrence-2k5.ndjson', path: '/v1/occurrences', events: 1 });

export default function () {
  send();
}
