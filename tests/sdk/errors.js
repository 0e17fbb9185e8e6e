// Drives one Node error tracker SDK, unmodified but for its endpoint, against inlet.
//
//   NODE_PATH=target/sdk/node/node_modules node tests/sdk/errors.js SDK BASE_URL KEY RUN [burst N]
//
// SDK is sentry (@sentry/node), sentry-quickstart (tracing and a session on),
// sentry-tunnel (its `tunnel` option: the key only in the envelope's `dsn`) or rollbar; BASE_URL is inlet's public listener
// (http://127.0.0.1:PORT); KEY a token of its registry; RUN a marker put into every report so
// the test finds its own. Reports a real exception thrown three calls deep, then messages at
// several levels, flushes, and prints one JSON line per report: what was sent (kind, level,
// message or exception class) and the event id the SDK chose for it, which inlet must keep.
//
// With `burst N`, instead sends N exceptions 25 ms apart and prints nothing: the rate limit
// test counts the requests that reached inlet after its first 429.
'use strict';

function deepFailure(run) {
  function parse(value) {
    throw new TypeError(`cannot parse ${value}`);
  }
  function load(value) {
    return parse(value);
  }
  return load(`not a number ${run}`);
}

function caught(run) {
  try {
    deepFailure(run);
  } catch (error) {
    return error;
  }
  throw new Error('deepFailure did not throw');
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function sentry(base, key, run, burst) {
  const Sentry = require('@sentry/node');
  const host = new URL(base).host;
  Sentry.init({
    dsn: `http://${key}@${host}/42`,
    environment: 'staging',
    release: 'shop@1.4.2',
    defaultIntegrations: false,
  });
  const reports = [];
  for (let i = 0; i < (burst || 1); i++) {
    const id = Sentry.captureException(caught(run));
    reports.push(['exception', 'error', 'TypeError', id]);
    if (burst) await sleep(25);
  }
  if (!burst) {
    for (const level of ['warning', 'info', 'fatal']) {
      const message = `${level} message ${run}`;
      reports.push(['message', level, message, Sentry.captureMessage(message, level)]);
    }
  }
  await Sentry.flush(20000);
  return reports;
}

// @sentry/node as its quickstart sets it up: tracing on (`tracesSampleRate: 1.0`), its default
// integrations, a release, and a release-health session. The exception is captured inside a
// span: it must land as an occurrence, the transaction and the session as items.
async function sentryQuickstart(base, key, run) {
  const Sentry = require('@sentry/node');
  const host = new URL(base).host;
  Sentry.init({
    dsn: `http://${key}@${host}/42`,
    environment: 'staging',
    release: 'shop@1.4.2',
    tracesSampleRate: 1.0,
  });
  const reports = [];
  Sentry.startSession();
  const name = `checkout ${run}`;
  let traceId;
  Sentry.startSpan({ name, op: 'task' }, (span) => {
    traceId = span.spanContext().traceId;
    Sentry.startSpan({ name: 'select', op: 'db' }, () => {});
    reports.push(['exception', 'error', 'TypeError', Sentry.captureException(caught(run))]);
  });
  reports.push(['transaction', '', name, traceId]);
  Sentry.endSession();
  await Sentry.flush(20000);
  return reports;
}

// @sentry/node with its `tunnel` option pointed at inlet's envelope endpoint, as a browser
// app's own server would forward envelopes: the request carries no key of its own, only the
// `dsn` in the envelope's header (whose host need not be inlet's).
async function sentryTunnel(base, key, run) {
  const Sentry = require('@sentry/node');
  Sentry.init({
    dsn: `https://${key}@o1.ingest.sentry.example/42`,
    tunnel: `${base}/api/42/envelope/`,
    environment: 'staging',
    release: 'shop@1.4.2',
    defaultIntegrations: false,
  });
  const id = Sentry.captureException(caught(run));
  await Sentry.flush(20000);
  return [['exception', 'error', 'TypeError', id]];
}

async function rollbar(base, key, run, burst) {
  const Rollbar = require('rollbar');
  const rollbar = new Rollbar({
    accessToken: key,
    endpoint: `${base}/api/1/item/`,
    environment: 'staging',
    codeVersion: '1.4.2',
    captureUncaught: false,
    captureUnhandledRejections: false,
  });
  const reports = [];
  const send = (level, what) =>
    new Promise((resolve) => {
      const sent = rollbar[level](what, () => resolve());
      reports.push([typeof what === 'string' ? 'message' : 'exception', level, what, sent.uuid]);
    });
  for (let i = 0; i < (burst || 1); i++) {
    const error = caught(run);
    if (burst) {
      send('error', error);
      await sleep(25);
    } else {
      await send('error', error);
    }
  }
  if (!burst) {
    for (const level of ['warning', 'info', 'critical']) {
      await send(level, `${level} message ${run}`);
    }
  }
  await new Promise((resolve) => rollbar.wait(resolve));
  return reports.map(([kind, level, what, id]) => [
    kind,
    level,
    typeof what === 'string' ? what : what.name,
    id,
  ]);
}

async function main() {
  const [sdk, base, key, run, mode, count] = process.argv.slice(2);
  const burst = mode === 'burst' ? Number(count) : 0;
  const scripts = {
    sentry,
    'sentry-quickstart': sentryQuickstart,
    'sentry-tunnel': sentryTunnel,
    rollbar,
  };
  const reports = await scripts[sdk](base, key, run, burst);
  if (burst) return;
  for (const [kind, level, what, id] of reports) {
    console.log(JSON.stringify({ kind, level, what, id }));
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
