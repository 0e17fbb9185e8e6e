//! Floor baseline: the least an axum HTTP/1 server can do per request. Every POST has its body
//! read in full and gets 204; `GET /healthz` answers 200.
//!
//!   inlet-floor [ADDR]        (default 127.0.0.1:8081)

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;

async fn ingest(body: Bytes) -> StatusCode {
    std::hint::black_box(body.len());
    StatusCode::NO_CONTENT
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8081".to_owned());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("floor-worker")
        .build()?;
    runtime.block_on(async move {
        let app = Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/{*path}", post(ingest))
            // Same cap as inlet's largest body (10 MiB occurrences).
            .layer(axum::extract::DefaultBodyLimit::max(10 << 20));
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        eprintln!("inlet-floor listening on {}", listener.local_addr()?);
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
    })
}
