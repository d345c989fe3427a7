//! `mtl serve`: the HTTP server of `mtl-serve` on a model named as for `mtl embed`.

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, Result};
use clap::Args;
use mtl_hub::ModelSource;
use std::time::Duration;

use mtl_serve::{Limits, ServeConfig, Timeouts};

use crate::backend::{BackendArgs, PrecisionArgs};

/// Serve a model over HTTP: text-embeddings-inference's routes in its shapes (/, /embed,
/// /similarity, /predict for models trained by mtl train, /tokenize, /decode), OpenAI's
/// /v1/embeddings, /embeddings and /v1/models, and /health, /info, /metrics, /openapi.json.
///
/// Concurrent requests are batched together on the model's thread. Stops on SIGINT or SIGTERM
/// after finishing the requests in flight. Every flag but --device and --quantize can also be
/// set from the environment, as containers do (MTL_PORT, MTL_MODEL, ...: each flag's help
/// names its variable); a flag given on the command line wins. Logs one line per request on standard error
/// (RUST_LOG sets the level, default info).
#[derive(Debug, Args)]
#[command(after_help = "Example:
  mtl serve --port 8080 &
  curl -s localhost:8080/v1/embeddings -H 'Content-Type: application/json' \\
    -d '{\"input\": [\"A man is eating food.\"], \"model\": \"all-MiniLM-L6-v2\"}'")]
pub struct ServeArgs {
    /// The model: a model directory (a sentence encoder, or a model saved by mtl train, whose
    /// tasks /predict then serves), a Hugging Face hub id (owner/name), or, left out, the
    /// default all-MiniLM-L6-v2.
    #[arg(long, env = "MTL_MODEL")]
    pub model: Option<String>,
    /// Hub revision (branch, tag or commit) of a hub id in --model. Default: main.
    #[arg(long, env = "MTL_REVISION")]
    pub revision: Option<String>,
    /// The address to listen on. Anything but a loopback address needs --api-key.
    #[arg(long, default_value = "127.0.0.1", env = "MTL_HOST")]
    pub host: IpAddr,
    /// The port to listen on (0: any free port, printed at start).
    #[arg(long, default_value_t = 8080, env = "MTL_PORT")]
    pub port: u16,
    /// The bearer token every route but /health then needs (`Authorization: Bearer KEY`).
    #[arg(long, env = "MTL_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Serve GET /metrics without the API key too (for a Prometheus scraper without it).
    #[arg(long, env = "MTL_PUBLIC_METRICS")]
    pub public_metrics: bool,
    /// Padded tokens per model batch at most (texts times the batch's longest text).
    #[arg(long, default_value_t = Limits::default().max_batch_tokens, env = "MTL_MAX_BATCH_TOKENS")]
    pub max_batch_tokens: usize,
    /// Model requests in flight at most; more are answered 429 Too Many Requests.
    #[arg(
        long,
        default_value_t = Limits::default().max_concurrent_requests,
        env = "MTL_MAX_CONCURRENT_REQUESTS"
    )]
    pub max_concurrent_requests: usize,
    /// Inputs per request at most; more are answered 413.
    #[arg(long, default_value_t = Limits::default().max_inputs, env = "MTL_MAX_INPUTS")]
    pub max_inputs: usize,
    /// Characters per input at most; more are answered 413.
    #[arg(long, default_value_t = Limits::default().max_input_chars, env = "MTL_MAX_INPUT_CHARS")]
    pub max_input_chars: usize,
    /// Bytes per request body at most; more are answered 413.
    #[arg(long, default_value_t = Limits::default().max_body_bytes, env = "MTL_MAX_BODY_BYTES")]
    pub max_body_bytes: usize,
    /// Tokenizations running at once (each on a thread of its own); more wait. Default: the
    /// number of CPU cores.
    #[arg(long, env = "MTL_TOKENIZATION_WORKERS")]
    pub tokenization_workers: Option<usize>,
    /// Seconds a client has to send a request's headers; then its connection is closed.
    #[arg(long, value_name = "SECONDS", default_value_t = Timeouts::default().header_read.as_secs_f64(), value_parser = seconds, env = "MTL_HEADER_TIMEOUT")]
    pub header_timeout: f64,
    /// Seconds a client has to send a request's body once its headers are in; then 408.
    #[arg(long, value_name = "SECONDS", default_value_t = Timeouts::default().body_read.as_secs_f64(), value_parser = seconds, env = "MTL_BODY_TIMEOUT")]
    pub body_timeout: f64,
    /// Seconds a request may take, from its headers to its answer; then 503 and its queued
    /// texts are dropped.
    #[arg(long, value_name = "SECONDS", default_value_t = Timeouts::default().request.as_secs_f64(), value_parser = seconds, env = "MTL_REQUEST_TIMEOUT")]
    pub request_timeout: f64,
    /// Seconds the requests in flight get to finish at shutdown (SIGINT, SIGTERM); then their
    /// connections are cut.
    #[arg(long, value_name = "SECONDS", default_value_t = Timeouts::default().shutdown.as_secs_f64(), value_parser = seconds, env = "MTL_SHUTDOWN_TIMEOUT")]
    pub shutdown_timeout: f64,
    /// An origin browsers may call the server from (CORS), e.g. https://app.example.com, or *
    /// for any; repeat the flag or separate origins by commas. Default: none (no CORS headers).
    #[arg(
        long,
        value_name = "ORIGIN",
        value_delimiter = ',',
        env = "MTL_CORS_ALLOW_ORIGIN"
    )]
    pub cors_allow_origin: Vec<String>,
    /// The model name reported by /v1/embeddings and /info. Default: the hub id, else the
    /// directory's name.
    #[arg(long, env = "MTL_SERVED_MODEL_NAME")]
    pub served_model_name: Option<String>,
    #[command(flatten)]
    pub backend: BackendArgs,
    #[command(flatten)]
    pub precision: PrecisionArgs,
}

/// Runs `mtl serve` until SIGINT or SIGTERM.
pub fn run(args: &ServeArgs) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let source = crate::model_arg::parse(args.model.as_deref(), args.revision.as_deref())?;
    let dir = crate::model_arg::resolve(&source)?;
    let device = args.backend.device()?;
    let mut config = ServeConfig::new(&dir, device);
    config.backend = format!("{} ({:?})", args.backend.backend, config.device);
    config.precision = args.precision.precision();
    config.model_name = match (&args.served_model_name, &source) {
        (Some(name), _) => name.clone(),
        (None, ModelSource::Hub { id, .. }) => id.clone(),
        (None, _) => config.model_name,
    };
    config.api_key = args.api_key.clone().filter(|k| !k.is_empty());
    config.public_metrics = args.public_metrics;
    config.limits = Limits {
        max_batch_tokens: args.max_batch_tokens,
        max_concurrent_requests: args.max_concurrent_requests,
        max_inputs: args.max_inputs,
        max_input_chars: args.max_input_chars,
        max_body_bytes: args.max_body_bytes,
        tokenization_workers: args
            .tokenization_workers
            .unwrap_or(Limits::default().tokenization_workers),
    };
    config.timeouts = Timeouts {
        header_read: Duration::from_secs_f64(args.header_timeout),
        body_read: Duration::from_secs_f64(args.body_timeout),
        request: Duration::from_secs_f64(args.request_timeout),
        shutdown: Duration::from_secs_f64(args.shutdown_timeout),
    };
    config.cors_allow_origins = args.cors_allow_origin.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("mtl-serve-http")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let address = SocketAddr::new(args.host, args.port);
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("listening on {address}"))?;
        let bound = listener
            .local_addr()
            .context("reading the listening address")?;
        eprintln!("listening on http://{bound}");
        mtl_serve::serve(config, listener, mtl_serve::shutdown_signal())
            .await
            .context("serving")
    })
}

/// Parses a positive number of seconds (at most a day).
fn seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s > 0.0 && s <= 86_400.0 => Ok(s),
        _ => Err(format!(
            "{text:?} is not a number of seconds from 0 (excluded) to 86400"
        )),
    }
}
