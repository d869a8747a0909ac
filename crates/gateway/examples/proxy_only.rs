//! `proxy_only --listen ADDR --upstream URL`: the gateway's accept and forward phases alone, for
//! the side-by-side benchmark (`make bench`). Not a product: it authenticates nobody.

use std::process::ExitCode;

/// The product binary's allocator (`crates/cli/src/main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// On the gateway's runtime (`invoiceguard_gateway::runtime`): single-threaded on one CPU.
fn main() -> ExitCode {
    match invoiceguard_gateway::runtime::build(0) {
        Ok(runtime) => runtime.block_on(run()),
        Err(error) => {
            eprintln!("proxy_only: cannot start the runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut listen, mut upstream) = (None, None);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--listen", Some(value)) => listen = Some(value),
            ("--upstream", Some(value)) => upstream = Some(value),
            _ => {
                eprintln!("usage: proxy_only --listen ADDR --upstream URL");
                return ExitCode::from(2);
            }
        }
    }
    let (Some(listen), Some(url)) = (listen, upstream) else {
        eprintln!("usage: proxy_only --listen ADDR --upstream URL");
        return ExitCode::from(2);
    };
    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("proxy_only: cannot listen on `{listen}`: {error}");
            return ExitCode::FAILURE;
        }
    };
    let config: invoiceguard_gateway::UpstreamConfig =
        match toml::from_str(&format!("url = {url:?}")) {
            Ok(config) => config,
            Err(error) => {
                eprintln!("proxy_only: {error}");
                return ExitCode::from(2);
            }
        };
    match invoiceguard_gateway::bench::serve_proxy_only(listener, &config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("proxy_only: {error}");
            ExitCode::FAILURE
        }
    }
}
