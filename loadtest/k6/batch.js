// k6: batches of 50 beacons of one session (gen.py's batch-50). Not run here.
//   k6 run -e BASE_URL=http://127.0.0.1:8080 loadtest/k6/batch.js
import { kind, options as makeOptions } from './lib.js';

export const options = makeOptions();
const send = kind('batch-50', { file: 'batch-50.ndjson', path: '/v1/beacons', events: 50 });

export default function () {
  send();
}
