//! `invoicing-api [--listen ADDR]`: runs the example invoicing API (default 127.0.0.1:9500).

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut listen = "127.0.0.1:9500".to_owned();
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--listen", Some(addr)) => listen = addr,
            _ => {
                eprintln!("usage: invoicing-api [--listen ADDR]");
                return ExitCode::from(2);
            }
        }
    }
    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("invoicing-api: cannot listen on `{listen}`: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!("invoicing-api listening on http://{listen}");
    invoicing_api::serve(listener).await;
    ExitCode::SUCCESS
}
