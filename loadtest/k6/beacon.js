// k6: single 800-byte beacons from many sessions (gen.py's beacon-800, session id rewritten
// per request). Not run here (k6 was not installable). See lib.js for the environment.
//   k6 run -e BASE_URL=http://127.0.0.1:8080 loadtest/k6/beacon.js
//   k6 run -e RATE=1000 -e DURATION=60s loadtest/k6/beacon.js
import { kind, options as makeOptions } from './lib.js';

export const options = makeOptions();
const send = kind('beacon-800', { file: 'beacon-800.ndjson', path: '/v1/beacons', events: 1, resession: true });

export default function () {
  send();
}
