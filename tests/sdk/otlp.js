// Drives the OpenTelemetry JS SDK for Node against inlet's OTLP/HTTP traces endpoint
// (POST /v1/traces) with @opentelemetry/exporter-trace-otlp-http, which sends OTLP/JSON.
//
//   OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:PORT \
//   OTEL_EXPORTER_OTLP_HEADERS=x-inlet-token=TOKEN \
//   OTEL_SERVICE_NAME=checkout \
//   NODE_PATH=target/sdk/node/node_modules node tests/sdk/otlp.js traces N
//
// Makes N spans over several traces (nested parents and children through the registered
// AsyncLocalStorage context manager, attributes of every type, an event, a link, a status)
// with NodeTracerProvider + BatchSpanProcessor(OTLPTraceExporter()), as the SDK's README sets it
// up. The exporter is configured only through the environment, as users do it: the endpoint,
// the headers (`authorization=Bearer%20TOKEN` works too: values are URL-decoded),
// OTEL_SERVICE_NAME (read by the resources package's envDetector), and any other OTEL_*
// variable (compression, timeout, ...).
//
// Prints one JSON line per span the SDK exported, taken from the batches handed to the
// exporter:
//   {"signal":"span","trace_id","span_id","parent_span_id","name","attributes"}
// and one per HTTP request the exporter made (each attempt, retries included) with the exact
// bytes it POSTed (http.request is wrapped to see them):
//   {"signal":"request","path","content_type","content_encoding","status","at","body_b64"}
// Exits 1 when an export failed (BatchSpanProcessor only hands the result to the global error
// handler, so the exporter's `export` is wrapped to check it) or fewer spans were exported
// than made.
'use strict';

const { trace, SpanKind, SpanStatusCode } = require('@opentelemetry/api');
const { ExportResultCode } = require('@opentelemetry/core');
const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-http');
const { defaultResource, detectResources, envDetector } = require('@opentelemetry/resources');
const { BatchSpanProcessor } = require('@opentelemetry/sdk-trace-base');
const { NodeTracerProvider } = require('@opentelemetry/sdk-trace-node');

const items = []; // the lines for the spans exported, in export order
const requests = []; // the lines for the HTTP requests made
const failures = []; // one message per export that did not succeed

// Records every HTTP request this process makes (only the exporter makes any): the bytes
// written to it, after any gzip, and the status of its answer. The exporter's transport takes
// `request` from `await import('http')` when it first sends, so `http.request` is wrapped
// here and syncBuiltinESMExports() makes that import see the wrapper. (Node 20's
// `http.client.request.start` diagnostics channel fires only once the body is written.)
function recordRequests() {
  const http = require('http');
  const request = http.request;
  http.request = function (...args) {
    const req = request.apply(this, args);
    const chunks = [];
    const keep = (chunk, encoding) => {
      if (chunk != null && typeof chunk !== 'function') {
        chunks.push(Buffer.from(chunk, typeof encoding === 'string' ? encoding : undefined));
      }
    };
    const { write, end } = req;
    req.write = function (chunk, encoding, ...rest) {
      keep(chunk, encoding);
      return write.call(this, chunk, encoding, ...rest);
    };
    req.end = function (chunk, encoding, ...rest) {
      keep(chunk, encoding);
      return end.call(this, chunk, encoding, ...rest);
    };
    req.on('response', (response) => {
      requests.push({
        signal: 'request',
        path: req.path,
        content_type: req.getHeader('content-type') ?? null,
        content_encoding: req.getHeader('content-encoding') ?? null,
        status: response.statusCode,
        // When the answer arrived (Unix seconds): the gaps between retries show the backoff.
        at: Date.now() / 1000,
        body_b64: Buffer.concat(chunks).toString('base64'),
      });
    });
    return req;
  };
  require('module').syncBuiltinESMExports();
}

// Wraps `exporter.export` so each batch's result is checked and, when it succeeded, its spans
// are recorded.
function checked(exporter) {
  const exportBatch = exporter.export.bind(exporter);
  exporter.export = (spans, resultCallback) =>
    exportBatch(spans, (result) => {
      if (result.code === ExportResultCode.SUCCESS) {
        items.push(...spans.map(spanLine));
      } else {
        failures.push(`span export: ${result.error?.message ?? 'failed'}`);
      }
      resultCallback(result);
    });
  return exporter;
}

function spanLine(span) {
  const ctx = span.spanContext();
  return {
    signal: 'span',
    trace_id: ctx.traceId,
    span_id: ctx.spanId,
    parent_span_id: span.parentSpanContext?.spanId ?? null,
    name: span.name,
    attributes: span.attributes,
  };
}

// N spans over ceil(N / 4) traces: a root, its child and grandchild, and a second child; each
// root after the first links to the previous root. Doubles are kept non-integral: the JSON
// exporter sends an integral JS number as intValue.
function makeTraces(tracer, n) {
  let made = 0;
  let previousRoot = null;
  for (let t = 0; made < n; t++) {
    const links = previousRoot
      ? [{ context: previousRoot, attributes: { 'link.reason': 'previous order' } }]
      : [];
    const rootAttributes = {
      'http.request.method': 'POST',
      'order.id': 1000 + t,
      'order.total': 99.5 + t,
      'order.express': t % 2 === 0,
      'order.tags': ['gift', 'priority'],
      'order.quantities': [1, 2, 3],
      'order.prices': [9.99, 19.5],
      'order.flags': [true, false],
    };
    tracer.startActiveSpan('POST /checkout', { kind: SpanKind.SERVER, links, attributes: rootAttributes }, (root) => {
      made++;
      previousRoot = root.spanContext();
      root.addEvent('cart loaded', { 'cart.items': 3, 'cart.currency': 'EUR' });
      if (made < n) {
        tracer.startActiveSpan('load cart', { attributes: { 'cart.id': `cart-${t}` } }, (cart) => {
          made++;
          if (made < n) {
            tracer.startActiveSpan(
              'SELECT carts',
              { kind: SpanKind.CLIENT, attributes: { 'db.system.name': 'postgresql' } },
              (query) => {
                made++;
                query.end();
              },
            );
          }
          cart.end();
        });
      }
      if (made < n) {
        tracer.startActiveSpan('charge card', { kind: SpanKind.PRODUCER }, (charge) => {
          made++;
          charge.setStatus({ code: SpanStatusCode.ERROR, message: 'card declined' });
          charge.end();
        });
      }
      root.setStatus({ code: SpanStatusCode.OK });
      root.end();
    });
  }
}

async function main() {
  const [what, count] = process.argv.slice(2);
  const n = Number.parseInt(count, 10);
  if (what !== 'traces' || !(n > 0)) {
    console.error('usage: otlp.js traces N');
    process.exit(2);
  }
  recordRequests();

  // The SDK as its README sets it up for Node, with OTEL_SERVICE_NAME read from the
  // environment into the resource.
  const exporter = checked(new OTLPTraceExporter());
  const provider = new NodeTracerProvider({
    resource: defaultResource().merge(detectResources({ detectors: [envDetector] })),
    spanProcessors: [new BatchSpanProcessor(exporter)],
  });
  provider.register();

  makeTraces(trace.getTracer('inlet.sdk.otlp', '1.0.0'), n);

  // Shutting the provider down flushes the processor: every span is exported by then.
  try {
    await provider.shutdown();
  } catch (error) {
    failures.push(`shutdown: ${error.message}`);
  }

  for (const line of [...items, ...requests]) console.log(JSON.stringify(line));
  if (items.length !== n) failures.push(`span: ${items.length} exported of ${n} made`);
  if (failures.length) {
    console.error(`otlp.js: ${failures.join('; ')}`);
    process.exit(1);
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
