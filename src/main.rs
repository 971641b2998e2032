use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    mail2ticket::cli::main(mail2ticket::cli::Cli::parse())
}
