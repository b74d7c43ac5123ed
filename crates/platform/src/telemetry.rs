//! Logs and traces.
//!
//! Logs go to stdout (`LOG_FORMAT=json` for one JSON object per line, the
//! default is human-readable text), filtered by `RUST_LOG` (default `info`).
//! Every span also becomes an OpenTelemetry span, so trace ids exist and
//! `traceparent` propagates across HTTP and AMQP whether or not anything is
//! exported; spans are exported over OTLP/HTTP when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set (the exporter reads the standard
//! `OTEL_EXPORTER_OTLP_*` variables itself).

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::TracerProvider;
use opentelemetry_sdk::Resource;
use std::sync::OnceLock;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

static PROVIDER: OnceLock<TracerProvider> = OnceLock::new();

/// Flushes pending spans when dropped at the end of `main`.
pub struct TelemetryGuard;

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = PROVIDER.get() {
            for result in provider.force_flush() {
                if let Err(err) = result {
                    eprintln!("telemetry flush failed: {err}");
                }
            }
        }
    }
}

/// Installs the global subscriber once per process; later calls are no-ops,
/// which lets tests start several services in one process. Must run inside a
/// Tokio runtime when OTLP export is enabled.
pub fn init(service_name: &'static str) -> TelemetryGuard {
    let _ = PROVIDER.get_or_init(|| install(service_name, false));
    TelemetryGuard
}

/// The same pipeline for tests: log lines go through the test harness's
/// capture, so they show only for failing tests.
pub fn init_for_tests(service_name: &'static str) {
    let _ = PROVIDER.get_or_init(|| install(service_name, true));
}

fn install(service_name: &'static str, for_tests: bool) -> TracerProvider {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let resource = Resource::new(vec![KeyValue::new("service.name", service_name)]);
    let mut builder = TracerProvider::builder().with_resource(resource);
    let mut export_error = None;
    if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some_and(|v| !v.is_empty()) {
        match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
        {
            Ok(exporter) => {
                builder = builder.with_batch_exporter(exporter, opentelemetry_sdk::runtime::Tokio)
            }
            Err(err) => export_error = Some(err.to_string()),
        }
    }
    let provider = builder.build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    let otel_layer = tracing_opentelemetry::layer().with_tracer(provider.tracer(service_name));

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let registry = tracing_subscriber::registry().with(filter).with(otel_layer);
    let installed = if for_tests {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .compact()
                    .with_test_writer(),
            )
            .try_init()
    } else if json {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init()
    } else {
        registry
            .with(tracing_subscriber::fmt::layer().compact())
            .try_init()
    };
    if installed.is_ok() {
        if let Some(err) = export_error {
            tracing::warn!(error = %err, "OTLP exporter could not be built; traces are not exported");
        }
    }
    provider
}

/// The trace id of the current span (32 hex digits), if there is one.
pub fn current_trace_id() -> Option<String> {
    let context = tracing::Span::current().context();
    let span_context = context.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

/// Makes `span` a child of the W3C trace context found in `carrier`.
pub fn set_parent_from(span: &tracing::Span, carrier: &dyn Extractor) {
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(carrier));
    span.set_parent(parent);
}

/// Links `span` to the W3C trace context found in `carrier`: for work done
/// on behalf of many traces at once (a batch of messages), which can have
/// only one parent.
pub fn link_from(span: &tracing::Span, carrier: &dyn Extractor) {
    let context = opentelemetry::global::get_text_map_propagator(|p| p.extract(carrier));
    let linked = context.span().span_context().clone();
    if linked.is_valid() {
        span.add_link(linked);
    }
}

/// Writes the current span's W3C trace context into `carrier`.
pub fn inject_current(carrier: &mut dyn Injector) {
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&context, carrier));
}
