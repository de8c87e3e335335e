//! The `bascule` binary: parse the command line, run it, print the error and exit
//! non-zero on failure.
use clap::Parser;

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp(None)
        .format_target(false)
        .init();
    let cli = bascule::cli::Cli::parse();
    if let Err(err) = bascule::cli::run(cli) {
        eprintln!("bascule: error: {err}");
        std::process::exit(1);
    }
}
