// k6: the same mix as loadtest/mix.lua, by requests: 70% single beacons, 14% batches of 50,
// 6% gzip batches, 8% 2.5 KB occurrences, 2% 100 KB session chunks. The token must allow
// beacons and occurrences. Not run here.
//   k6 run -e BASE_URL=http://127.0.0.1:8080 -e RATE=1000 loadtest/k6/mix.js
import { kind, weighted, options as makeOptions } from './lib.js';

export const options = makeOptions();
const send = weighted([
  [35, kind('beacon-800', { file: 'beacon-800.ndjson', path: '/v1/beacons', events: 1, resession: true })],
  [7, kind('batch-50', { file: 'batch-50.ndjson', path: '/v1/beacons', events: 50 })],
  [3, kind('batch-50-gzip', {
    file: 'batch-50-gzip.b64', b64: true, path: '/v1/beacons', events: 50,
    contentType: 'application/x-ndjson', encoding: 'gzip',
  })],
  [4, kind('occurrence-2k5', { file: 'occurrence-2k5.ndjson', path: '/v1/occurrences', events: 1 })],
  [1, kind('chunk-100k', { file: 'chunk-100k.ndjson', path: '/v1/occurrences', events: 1 })],
]);

export default function () {
  send();
}
