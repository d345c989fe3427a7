//! `cargo xtask bench-serve`: `mtl serve` under load beside a Python server of the same model
//! (scripts/serve_pytorch.py: sentence-transformers behind FastAPI/uvicorn), on the same
//! machine, with the same requests, the two servers taking turns.
//!
//! Each of 1, 8 and 64 clients (threads, one keep-alive connection each) sends TEI `/embed`
//! requests of 1 to 16 tweets (seeded) back to back for the measured time; requests/s, texts/s,
//! median and 99th-percentile latency and errors are reported, with the servers' peak RSS and
//! the offline throughput of `mtl-bench embed` (batch 32) on the same tweets. Then a mixed
//! load: 8 clients sending 256-tweet requests while one client sends one-tweet requests, whose
//! latency shows whether short requests wait behind big ones. `--with-int8` adds `mtl serve
//! --quantize int8`, `--baseline` another build of `mtl`, `--with-python` the Python server.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::{build_release, datasets, fetch_model, target_dir, torch_venv, workspace_root};

/// One level of load on one server.
struct Load {
    server: &'static str,
    clients: usize,
    requests: usize,
    texts: usize,
    errors: usize,
    seconds: f64,
    latencies: Vec<f64>,
    /// The server's resident memory after this load, MiB.
    rss_after: f64,
}

impl Load {
    fn percentile(&self, p: f64) -> f64 {
        let mut sorted = self.latencies.clone();
        sorted.sort_by(f64::total_cmp);
        sorted
            .get(((sorted.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    }
}

/// What `cargo xtask bench-serve` runs (its flags).
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// flex (CPU, default), ndarray, wgpu, tch or cuda.
    #[arg(long, default_value = "flex")]
    pub backend: String,
    /// Seconds of load per server and client count (after 2 s of warm-up).
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Client counts.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    pub clients: Vec<usize>,
    /// Also load the Python server (creates .cache/torch-venv on first use).
    #[arg(long)]
    pub with_python: bool,
    /// `mtl serve --max-batch-tokens` (default: the server's).
    #[arg(long)]
    pub max_batch_tokens: Option<usize>,
    /// `mtl serve --max-concurrent-requests`: below the client count, the extra requests
    /// are answered 429 (counted as errors).
    #[arg(long, default_value_t = 4096)]
    pub max_concurrent_requests: usize,
    /// Also load `mtl serve --quantize int8` (this tree's build), in the same table.
    #[arg(long)]
    pub with_int8: bool,
    /// Also load another `mtl` binary's `mtl serve` with the same flags (an older build,
    /// for before-and-after numbers in the same run).
    #[arg(long, value_name = "MTL_BINARY")]
    pub baseline: Option<std::path::PathBuf>,
}

pub fn run(options: &Options) -> Result<()> {
    let Options {
        backend,
        seconds,
        clients,
        with_python,
        with_int8,
        max_batch_tokens,
        max_concurrent_requests,
        baseline,
    } = options;
    let (backend, seconds, with_python, with_int8) =
        (backend.as_str(), *seconds, *with_python, *with_int8);
    let (max_batch_tokens, max_concurrent_requests) = (*max_batch_tokens, *max_concurrent_requests);
    let model = fetch_model()?;
    datasets(false)?;
    let tweets = tweets()?;
    let corpus = mtl_assets::cache_dir().join("bench/tweets.txt");
    std::fs::create_dir_all(corpus.parent().expect("a parent"))?;
    std::fs::write(&corpus, tweets.join("\n") + "\n")?;
    let (mtl, env) = build_release("mtl", backend)?;
    let (bench, _) = build_release("mtl-bench", backend)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());

    let serve = |binary: &std::path::Path| {
        let mut command = Command::new(binary);
        command
            .args(["serve", "--port", "0", "--backend", backend])
            .args(["--model", &model.display().to_string()])
            .args([
                "--max-concurrent-requests",
                &max_concurrent_requests.to_string(),
            ])
            .envs(env.iter().map(|(k, v)| (k, v)));
        if let Some(tokens) = max_batch_tokens {
            command.args(["--max-batch-tokens", &tokens.to_string()]);
        }
        command
    };
    let mut servers = vec![("mtl serve", start(serve(&mtl), "listening on http://")?)];
    if with_int8 {
        let mut int8 = serve(&mtl);
        int8.args(["--quantize", "int8"]);
        servers.push(("mtl serve (int8)", start(int8, "listening on http://")?));
    }
    if let Some(binary) = baseline {
        servers.push((
            "mtl serve (baseline)",
            start(serve(binary), "listening on http://")?,
        ));
    }
    if with_python {
        let venv = torch_venv()?;
        let port = free_port()?;
        let mut python = Command::new(venv.join("bin/python"));
        python
            .arg(workspace_root().join("scripts/serve_pytorch.py"))
            .args(["--model", &model.display().to_string()])
            .args([
                "--port",
                &port.to_string(),
                "--threads",
                &threads.to_string(),
            ]);
        servers.push((
            "Python (FastAPI)",
            start_at(python, format!("127.0.0.1:{port}"))?,
        ));
    }

    let mut loads = Vec::new();
    for (round, &n) in clients.iter().enumerate() {
        // The servers take turns, starting with the other one each round.
        let order: Vec<usize> = if round % 2 == 0 {
            (0..servers.len()).collect()
        } else {
            (0..servers.len()).rev().collect()
        };
        for i in order {
            let (name, server) = &servers[i];
            eprintln!("{name}: {n} client(s), {seconds} s");
            load(&server.address, &tweets, n, 2.0)?; // warm-up
            let mut measured = load(&server.address, &tweets, n, seconds)?;
            measured.server = name;
            measured.rss_after = rss_mib(server.child.id(), "VmRSS:");
            loads.push(measured);
        }
    }
    // Mixed load, the servers taking turns too.
    let mut mixed_loads = Vec::new();
    for (name, server) in &servers {
        eprintln!("{name}: mixed load (8 clients x 256 texts, 1 client x 1 text), {seconds} s");
        let (mut small, mut big) = mixed(&server.address, &tweets, seconds)?;
        small.server = name;
        big.server = name;
        mixed_loads.push((small, big));
    }
    let rss: Vec<(String, f64)> = servers
        .iter()
        .map(|(name, s)| ((*name).to_owned(), rss_mib(s.child.id(), "VmHWM:")))
        .collect();
    for (_, mut server) in servers {
        let _ = Command::new("kill")
            .args(["-TERM", &server.child.id().to_string()])
            .status();
        let _ = server.child.wait();
    }

    let mut offline = Command::new(&bench);
    offline
        .args(["embed", "--corpus", &corpus.display().to_string()])
        .args([
            "--model",
            &model.display().to_string(),
            "--batch-size",
            "32",
        ])
        .args(["--backend", backend])
        .envs(env.iter().map(|(k, v)| (k, v)));
    let offline = crate::bench::run_json(offline)?["throughput"]
        .as_f64()
        .context("mtl-bench printed no throughput")?;

    let json: Vec<Value> = loads
        .iter()
        .map(|l| {
            json!({
                "server": l.server, "clients": l.clients, "requests": l.requests,
                "texts": l.texts, "errors": l.errors, "seconds": l.seconds,
                "p50_ms": l.percentile(0.5) * 1e3, "p99_ms": l.percentile(0.99) * 1e3,
                "rss_after_mib": l.rss_after,
            })
        })
        .collect();
    let out = target_dir().join("bench");
    std::fs::create_dir_all(&out)?;
    let mixed_json: Vec<Value> = mixed_loads
        .iter()
        .map(|(small, big)| {
            json!({
                "server": small.server,
                "one_text_requests": small.requests, "one_text_errors": small.errors,
                "one_text_p50_ms": small.percentile(0.5) * 1e3,
                "one_text_p99_ms": small.percentile(0.99) * 1e3,
                "big_requests": big.requests, "big_errors": big.errors,
                "big_texts_per_s": big.texts as f64 / big.seconds,
                "big_p99_ms": big.percentile(0.99) * 1e3,
            })
        })
        .collect();
    let results = json!({
        "loads": json, "mixed": mixed_json, "peak_rss_mib": rss, "offline_texts_per_s": offline
    });
    std::fs::write(
        out.join("serve.json"),
        serde_json::to_string_pretty(&results)?,
    )?;

    println!(
        "| server | clients | requests/s | texts/s | p50 ms | p99 ms | errors | RSS after, MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for l in &loads {
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {:.0} |",
            l.server,
            l.clients,
            l.requests as f64 / l.seconds,
            l.texts as f64 / l.seconds,
            l.percentile(0.5) * 1e3,
            l.percentile(0.99) * 1e3,
            l.errors,
            l.rss_after
        );
    }
    println!();
    println!("Mixed load: 8 clients sending 256-text requests, 1 client sending one-text requests");
    println!();
    println!(
        "| server | one-text requests | one-text p50 ms | one-text p99 ms | 256-text requests | their texts/s | their p99 ms | errors |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (small, big) in &mixed_loads {
        println!(
            "| {} | {} | {:.1} | {:.1} | {} | {:.1} | {:.0} | {} |",
            small.server,
            small.requests,
            small.percentile(0.5) * 1e3,
            small.percentile(0.99) * 1e3,
            big.requests,
            big.texts as f64 / big.seconds,
            big.percentile(0.99) * 1e3,
            small.errors + big.errors
        );
    }
    println!();
    for (name, mib) in &rss {
        println!("peak RSS of {name}: {mib:.0} MiB");
    }
    println!("offline `mtl-bench embed` of the same tweets, batch 32: {offline:.1} texts/s");
    if let Some(top) = loads
        .iter()
        .filter(|l| l.server == "mtl serve")
        .max_by_key(|l| l.clients)
    {
        println!(
            "mtl serve at {} clients: {:.0}% of offline throughput",
            top.clients,
            100.0 * top.texts as f64 / top.seconds / offline
        );
    }
    eprintln!("raw results: {}", out.join("serve.json").display());
    Ok(())
}

/// The tweets of the benchmark: the first 2,000 of the training split, one line each.
fn tweets() -> Result<Vec<String>> {
    let path = crate::datasets_dir().join("tweets/train.jsonl");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .take(2000)
        .map(|line| {
            let value: Value = serde_json::from_str(line)?;
            let text = value["text"].as_str().context("a text field")?;
            Ok(text.replace(['\n', '\r'], " "))
        })
        .collect()
}

/// A server process and its address.
struct Server {
    child: Child,
    address: String,
}

/// Starts `command`, reads its address from the stderr line starting with `prefix`, and waits
/// for `/health`.
fn start(mut command: Command, prefix: &str) -> Result<Server> {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {command:?}"))?;
    let mut lines = BufReader::new(child.stderr.take().expect("piped")).lines();
    let address = loop {
        let Some(line) = lines.next() else {
            bail!("{command:?} ended before listening");
        };
        if let Some(address) = line?.strip_prefix(prefix) {
            break address.trim().to_owned();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    wait_healthy(&address)?;
    Ok(Server { child, address })
}

/// Starts `command`, which listens on `address`, and waits for `/health`.
fn start_at(mut command: Command, address: String) -> Result<Server> {
    let child = command
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {command:?}"))?;
    wait_healthy(&address)?;
    Ok(Server { child, address })
}

fn wait_healthy(address: &str) -> Result<()> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(300) {
        if let Ok(mut client) = Client::connect(address)
            && client.request("GET", "/health", "").is_ok_and(|s| s == 200)
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("the server at {address} was not healthy within 300 s")
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `n` clients sending requests of 1 to 16 tweets back to back for `seconds`.
fn load(address: &str, tweets: &[String], n: usize, seconds: f64) -> Result<Load> {
    load_of(address, tweets, n, None, seconds)
}

/// Mixed load: 8 clients sending 256-tweet requests back to back and, at the same time, one
/// client sending one-tweet requests; the one-tweet requests' load (its latency percentiles are
/// the point), then the big ones'.
fn mixed(address: &str, tweets: &[String], seconds: f64) -> Result<(Load, Load)> {
    std::thread::scope(|scope| {
        let big = scope.spawn(|| load_of(address, tweets, 8, Some(256), seconds));
        // The one-text client starts once the big requests are queued.
        std::thread::sleep(Duration::from_millis(200));
        let small = load_of(address, tweets, 1, Some(1), seconds - 0.4)?;
        Ok((small, big.join().expect("the big clients' thread")?))
    })
}

/// `n` clients sending requests of `size` tweets (`None`: 1 to 16, seeded) back to back for
/// `seconds`.
fn load_of(
    address: &str,
    tweets: &[String],
    n: usize,
    size: Option<usize>,
    seconds: f64,
) -> Result<Load> {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let per_client: Vec<Result<Load>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|client| {
                scope.spawn(move || {
                    let mut connection = Client::connect(address)?;
                    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ client as u64;
                    let mut mine = Load {
                        server: "",
                        clients: 1,
                        requests: 0,
                        texts: 0,
                        errors: 0,
                        seconds: 0.0,
                        latencies: Vec::new(),
                        rss_after: f64::NAN,
                    };
                    while Instant::now() < deadline {
                        state = state
                            .wrapping_mul(6_364_136_223_846_793_005)
                            .wrapping_add(1);
                        let count = size.unwrap_or(1 + (state >> 33) as usize % 16);
                        let start = (state >> 17) as usize % tweets.len();
                        let inputs: Vec<&String> = (0..count)
                            .map(|i| &tweets[(start + i) % tweets.len()])
                            .collect();
                        let body = json!({"inputs": inputs, "normalize": true}).to_string();
                        let sent = Instant::now();
                        match connection.request("POST", "/embed", &body) {
                            Ok(200) => {
                                mine.requests += 1;
                                mine.texts += count;
                                mine.latencies.push(sent.elapsed().as_secs_f64());
                            }
                            Ok(_) => mine.errors += 1,
                            Err(_) => {
                                mine.errors += 1;
                                connection = Client::connect(address)?;
                            }
                        }
                    }
                    Ok(mine)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a client thread"))
            .collect()
    });
    let seconds = started.elapsed().as_secs_f64();
    let mut total = Load {
        server: "",
        clients: n,
        requests: 0,
        texts: 0,
        errors: 0,
        seconds,
        latencies: Vec::new(),
        rss_after: f64::NAN,
    };
    for result in per_client {
        let mine = result?;
        total.requests += mine.requests;
        total.texts += mine.texts;
        total.errors += mine.errors;
        total.latencies.extend(mine.latencies);
    }
    Ok(total)
}

/// An HTTP/1.1 keep-alive connection that sends a request and reads a response with a
/// `Content-Length` (both servers send one): all a load generator needs, without a TLS stack in
/// xtask's build.
struct Client {
    reader: BufReader<TcpStream>,
    host: String,
}

impl Client {
    fn connect(address: &str) -> Result<Self> {
        let stream = TcpStream::connect(address)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        Ok(Self {
            reader: BufReader::new(stream),
            host: address.to_owned(),
        })
    }

    /// Sends a request; returns the response's status (its body read and dropped).
    fn request(&mut self, method: &str, path: &str, body: &str) -> Result<u16> {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            self.host,
            body.len()
        );
        let stream = self.reader.get_mut();
        stream.write_all(head.as_bytes())?;
        stream.write_all(body.as_bytes())?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .context("no status line")?
            .parse()?;
        let mut length = None;
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = Some(value.trim().parse::<usize>()?);
            }
        }
        let length = length.context("a response without Content-Length")?;
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body)?;
        Ok(status)
    }
}

/// A memory figure of process `pid` in MiB: `field` `VmRSS:` (now) or `VmHWM:` (peak).
fn rss_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}
