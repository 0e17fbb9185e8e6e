// Shared by the k6 scripts in loadtest/k6/ (written to k6's documented API; not run here: k6
// was not installable on the machine these were written on).
//
// Environment (k6 run -e NAME=VALUE or the process environment):
//   BASE_URL     inlet's address (default http://127.0.0.1:8080)
//   INLET_TOKEN  token (default devtoken)
//   DATA         directory of gen.py's body files, relative to this file or absolute
//                (default ../data, i.e. loadtest/data)
//   RATE         requests per second: constant-arrival-rate; unset: constant-vus
//   VUS          virtual users (default 64; with RATE, the pre-allocated VUs)
//   MAX_VUS      with RATE, the most VUs k6 may start (default 1024)
//   DURATION     default 30s
//   SESSIONS     distinct session ids for single beacons (default 100000)
import http from 'k6/http';
import encoding from 'k6/encoding';
import { check } from 'k6';
import { SharedArray } from 'k6/data';
import { Counter } from 'k6/metrics';

export const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:8080';
const TOKEN = __ENV.INLET_TOKEN || 'devtoken';
const DATA = __ENV.DATA || '../data';
const SESSIONS = parseInt(__ENV.SESSIONS || '100000', 10);

export const events = new Counter('events');

export function options() {
  const duration = __ENV.DURATION || '30s';
  const vus = parseInt(__ENV.VUS || '64', 10);
  const scenario = __ENV.RATE
    ? {
        executor: 'constant-arrival-rate',
        rate: parseInt(__ENV.RATE, 10),
        timeUnit: '1s',
        duration,
        preAllocatedVUs: vus,
        maxVUs: parseInt(__ENV.MAX_VUS || '1024', 10),
      }
    : { executor: 'constant-vus', vus, duration };
  return {
    scenarios: { load: scenario },
    summaryTrendStats: ['avg', 'p(50)', 'p(90)', 'p(99)', 'p(99.9)', 'max'],
    discardResponseBodies: true,
    thresholds: { checks: ['rate>0.99'] },
  };
}

// One kind of traffic. Call at the top level of a script (init context: open() and
// SharedArray are only allowed there).
//   file: gen.py's file name; path: URL path; events: per body; b64: lines are base64 bodies;
//   contentType, encoding: headers; resession: rewrite the session id per request.
export function kind(name, spec) {
  const lines = new SharedArray(name, function () {
    return open(`${DATA}/${spec.file}`)
      .split('\n')
      .filter((l) => l.length > 0);
  });
  const headers = {
    Authorization: `Bearer ${TOKEN}`,
    'Content-Type': spec.contentType || 'application/json',
  };
  if (spec.encoding) headers['Content-Encoding'] = spec.encoding;
  const params = { headers, tags: { kind: name } };
  let pos = -1;
  return function send() {
    pos += 1;
    const line = lines[(pos + __VU * 7919) % lines.length];
    let body = line;
    if (spec.b64) {
      body = encoding.b64decode(line, 'std'); // an ArrayBuffer: the gzip bytes
    } else if (spec.resession) {
      const n = String(Math.floor(Math.random() * SESSIONS)).padStart(8, '0');
      body = line.replace(/"session_id":"sess-\d{8}"/, `"session_id":"sess-${n}"`);
    }
    const res = http.post(`${BASE_URL}${spec.path}`, body, params);
    const ok = check(res, { 'accepted (200/202)': (r) => r.status === 200 || r.status === 202 });
    if (ok) events.add(spec.events, { kind: name });
    return res;
  };
}

// Picks a sender by weight: [[weight, send], ...].
export function weighted(choices) {
  const total = choices.reduce((s, c) => s + c[0], 0);
  return function send() {
    let r = Math.random() * total;
    for (const [w, f] of choices) {
      if ((r -= w) < 0) return f();
    }
    return choices[choices.length - 1][1]();
  };
}
