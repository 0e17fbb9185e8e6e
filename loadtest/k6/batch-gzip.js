// k6: gzip-encoded NDJSON batches of 50 beacons (gen.py's batch-50-gzip.b64, decoded per
// request to the gzip bytes). Not run here.
//   k6 run -e BASE_URL=http://127.0.0.1:8080 loadtest/k6/batch-gzip.js
import { kind, options as makeOptions } from './lib.js';

export const options = makeOptions();
const send = kind('batch-50-gzip', {
  file: 'batch-50-gzip.b64', b64: true, path: '/v1/beacons', events: 50,
  contentType: 'application/x-ndjson', encoding: 'gzip',
});

export default function () {
  send();
}
