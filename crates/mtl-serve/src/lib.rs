//! An HTTP inference server for sentence embeddings and multi-task predictions, the library
//! behind `mtl serve` (a program can embed it).
//!
//! Routes: text-embeddings-inference's (TEI's) `POST /` (by model kind), `/embed`,
//! `/similarity`, `/predict` (a model trained by `mtl train`), `/tokenize`, `/decode` and
//! `/rerank` (refused: 424), in TEI's shapes; OpenAI's `POST /v1/embeddings` (and the alias
//! `/embeddings`) and `GET /v1/models`; `GET /health`, `GET /info`, `GET /metrics`
//! (Prometheus), `GET /openapi.json`. Errors are TEI's `{"error", "error_type"}` on TEI's
//! routes and this server's own, OpenAI's `{"error": {"message", "type", "param", "code"}}`
//! on OpenAI's; a 429 says `Retry-After`. A request field a route does not know is a 422.
//!
//! The model runs on one thread of its own that batches the texts of concurrent requests
//! together (up to [`Limits::max_batch_tokens`] padded tokens), fairly: requests take turns, and
//! those that have not run yet get every other turn, so a short request arriving while big
//! ones run waits a few batches, and no request starves. Handlers parse and
//! answer; between them and the model thread, a layer checks the inputs, tokenizes them on a
//! bounded pool ([`Limits::tokenization_workers`]) and queues them. At most
//! [`Limits::max_concurrent_requests`] model requests are in flight, counted once their body is
//! read; more are answered 429 at once. Slow or stalled clients meet [`Timeouts`]; a client
//! that hangs up has its queued texts dropped. The model warms up (a batch of each shape)
//! before `/health` answers 200; if its thread dies, `/health` answers 503 and [`serve`]
//! returns [`Error::ModelThread`].
//!
//! ```no_run
//! # async fn run() -> Result<(), mtl_serve::Error> {
//! let device = mtl_bert::Backend::Flex.device(0).unwrap();
//! let config = mtl_serve::ServeConfig::new("runs/default/best", device);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await.unwrap();
//! mtl_serve::serve(config, listener, mtl_serve::shutdown_signal()).await
//! # }
//! ```
//!
//! # Public items
//!
//! - [`serve`]: serves a [`ServeConfig`] (model directory, device, [`Limits`], [`Timeouts`],
//!   CORS origins, API key) on a listener until a shutdown future completes;
//!   [`shutdown_signal`] is the usual one.
//! - [`Error`]: why the server did not start or stopped.
//!
//! The request and response bodies are documented by the server itself: `GET /openapi.json`.

#![warn(unreachable_pub)]

mod api;
mod error;
mod infer;
mod metrics;
mod middleware;
mod openai;
mod prompts;
mod queue;
mod routes;
mod server;
mod tei;
mod tei_api;
mod worker;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mtl_bert::burn::prelude::Device;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub use error::Error;

/// What the server accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Padded tokens per model batch at most (texts × the batch's longest). Default: 2048,
    /// the best of 1k-16k measured on a 2-core CPU (`cargo xtask bench-serve`): larger batches
    /// ran slower there; a GPU wants more.
    pub max_batch_tokens: usize,
    /// Model requests in flight at most, counted once a request's body is read; more are
    /// answered 429. Default: 512.
    pub max_concurrent_requests: usize,
    /// Inputs per request at most; more are answered 413. Default: 2048 (as OpenAI's API).
    pub max_inputs: usize,
    /// Characters per input at most; more are answered 413. Default: 100,000.
    pub max_input_chars: usize,
    /// Bytes per request body at most; more are answered 413. Default: 2 MiB.
    pub max_body_bytes: usize,
    /// Tokenizations running at once, each on a blocking thread; more wait for one to end.
    /// Default: the number of CPU cores.
    pub tokenization_workers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_batch_tokens: 2048,
            max_concurrent_requests: 512,
            max_inputs: 2048,
            max_input_chars: 100_000,
            max_body_bytes: 2 << 20,
            tokenization_workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// How long the server waits for clients, and for itself at shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// A request's headers must arrive within this (from its first byte, or from the
    /// connection's start); else the connection is closed without an answer. Default: 10 s.
    pub header_read: Duration,
    /// A request's body must arrive within this once its headers have; else 408. Default: 30 s.
    pub body_read: Duration,
    /// A request must be answered within this once its headers have arrived; else 503, and its
    /// queued texts are dropped. Default: 120 s.
    pub request: Duration,
    /// At shutdown, the requests in flight get this long to finish; then their connections are
    /// cut. Default: 30 s.
    pub shutdown: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            header_read: Duration::from_secs(10),
            body_read: Duration::from_secs(30),
            request: Duration::from_secs(120),
            shutdown: Duration::from_secs(30),
        }
    }
}

/// Everything the server needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The model directory: a sentence encoder (Hugging Face / sentence-transformers layout),
    /// or a model saved by `mtl train` (then `/predict` serves its tasks too).
    pub model_dir: PathBuf,
    /// The name `/v1/embeddings` and `/info` report. Default: the directory's name.
    pub model_name: String,
    /// The device the model runs on.
    pub device: Device,
    /// The backend and device in words, for `/info`. Default: the device's debug form.
    pub backend: String,
    /// The encoder's precision (int8 quantises it as it loads). Default: fp32.
    pub precision: mtl_bert::Precision,
    /// What requests may be.
    pub limits: Limits,
    /// How long the server waits.
    pub timeouts: Timeouts,
    /// The origins browsers may call the server from (CORS): `*` for any. Default: none (no
    /// CORS headers; browsers allow same-origin calls only).
    pub cors_allow_origins: Vec<String>,
    /// The bearer token every route but `/health` (and `/metrics` when `public_metrics`) then
    /// needs. Required when the server listens on an address other than loopback.
    pub api_key: Option<String>,
    /// Serve `GET /metrics` without the API key too (for a Prometheus scraper that has none).
    /// Default: false.
    pub public_metrics: bool,
}

impl ServeConfig {
    /// The model in `model_dir` on `device`, with the default limits and no API key.
    pub fn new(model_dir: impl Into<PathBuf>, device: Device) -> Self {
        let model_dir = model_dir.into();
        let model_name = model_dir
            .file_name()
            .map_or_else(|| "model".into(), |n| n.to_string_lossy().into_owned());
        Self {
            model_name,
            backend: format!("{device:?}"),
            precision: mtl_bert::Precision::Fp32,
            model_dir,
            device,
            limits: Limits::default(),
            timeouts: Timeouts::default(),
            cors_allow_origins: Vec::new(),
            api_key: None,
            public_metrics: false,
        }
    }
}

/// Serves on `listener` until `shutdown` completes, then stops accepting, finishes the
/// requests in flight and returns.
///
/// The model loads on its own thread while the server already answers (`/health` is 503
/// until it is loaded); a model that fails to load stops the server with that error.
pub async fn serve(
    config: ServeConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let address = listener.local_addr().map_err(|source| Error::Io {
        context: "reading the listening address".into(),
        source,
    })?;
    if config.api_key.is_none() && !address.ip().is_loopback() {
        return Err(Error::Config(format!(
            "listening on {address}, which is not a loopback address, needs an API key \
             (--api-key or MTL_API_KEY)"
        )));
    }
    if config.limits.max_concurrent_requests == 0
        || config.limits.max_batch_tokens == 0
        || config.limits.tokenization_workers == 0
    {
        return Err(Error::Config(
            "max concurrent requests, max batch tokens and tokenization workers must be at \
             least 1"
                .into(),
        ));
    }
    let prompts = prompts::Prompts::load(&config.model_dir)?;
    let metrics = Arc::new(metrics::Metrics::new());
    let (ready_tx, ready) = oneshot::channel();
    let (worker, thread) = worker::Worker::start(
        config.model_dir.clone(),
        config.device.clone(),
        config.precision,
        config.limits.max_batch_tokens,
        metrics.clone(),
        ready_tx,
    )
    .map_err(|source| Error::Io {
        context: "starting the model thread".into(),
        source,
    })?;
    // The model thread is watched: if it dies (a panic, as a GPU running out of memory
    // raises), `/health` turns 503 and the server stops, and `serve` returns an error so that a
    // supervisor restarts the process. It holds no handle of the server's state, or the
    // thread's queue would never close.
    let dead = Arc::new(AtomicBool::new(false));
    let (died, died_signal) = oneshot::channel::<()>();
    let watch = dead.clone();
    let watcher = tokio::task::spawn_blocking(move || {
        let panicked = thread.join().is_err();
        if panicked {
            watch.store(true, Ordering::SeqCst);
            tracing::error!("the model thread died: stopping the server");
            let _ = died.send(());
        }
        panicked
    });
    let state = Arc::new(routes::Shared::new(&config, prompts, worker, metrics, dead));
    let app = routes::router(state.clone(), &config.cors_allow_origins)?;
    let (stop, stopped) = oneshot::channel::<()>();
    let server = server::run(listener, app, config.timeouts, async move {
        let died = async {
            // A thread that ends without dying (the server stopping) is no signal.
            if died_signal.await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            () = shutdown => {}
            _ = stopped => {}
            () = died => {}
        }
    });
    let server = tokio::spawn(server);
    tracing::info!(%address, model = %config.model_dir.display(), "listening; loading the model");
    let loaded = match ready.await {
        Ok(Ok(info)) => {
            tracing::info!(dim = info.dim, "model loaded: ready");
            let _ = state.model.set(info);
            Ok(())
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(Error::Config("the model thread ended while loading".into())),
    };
    // Dropping `stop` (after a failed load) ends the server; it lives until the server ends.
    let stop = loaded.is_ok().then_some(stop);
    let served = server.await;
    drop(stop);
    drop(state);
    loaded?;
    // The router and its handles are gone: the model thread's queue is closed.
    if watcher.await.unwrap_or(true) {
        return Err(Error::ModelThread);
    }
    served.map_err(|e| Error::Io {
        context: "the server task".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    tracing::info!("stopped");
    Ok(())
}

/// Completes on SIGINT (Ctrl-C) or, on Unix, SIGTERM: the usual end of a server.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: finishing the requests in flight");
}
