//! `mail2ticket web hash-password`: the admin password in, its argon2id hash out, for
//! `[web] admin_password_hash`. From a terminal the password is asked twice without echo; from
//! a pipe (`printf %s "$PW" | mail2ticket web hash-password`) it is read as it is.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

/// Shorter passwords are refused: the page guards every mailbox password.
const MIN_LENGTH: usize = 10;

pub fn hash_password_command() -> ExitCode {
    let stdin = std::io::stdin();
    let password = if stdin.is_terminal() {
        let first = ask("Admin password for the accounts page: ");
        let second = ask("Again: ");
        match (first, second) {
            (Ok(a), Ok(b)) if a == b => a,
            (Ok(_), Ok(_)) => {
                eprintln!("error: the two passwords differ; nothing printed");
                return ExitCode::FAILURE;
            }
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("error: cannot read the password: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        let mut text = String::new();
        if let Err(e) = stdin.lock().read_line(&mut text) {
            eprintln!("error: cannot read the password from stdin: {e}");
            return ExitCode::FAILURE;
        }
        text.trim_end_matches(['\r', '\n']).to_string()
    };
    if password.chars().count() < MIN_LENGTH {
        eprintln!(
            "error: the password is shorter than {MIN_LENGTH} characters; the page holds every \
             mailbox's password, so choose a longer one"
        );
        return ExitCode::FAILURE;
    }
    match crate::password_hash::hash(&password) {
        Ok(hash) => {
            println!("{hash}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One line from the terminal with echo off, by `stty` on the terminal we read from: the crate
/// forbids unsafe code (termios calls), and a crate for these few lines would be more weight.
fn ask(prompt: &str) -> std::io::Result<String> {
    eprint!("{prompt}");
    std::io::stderr().flush()?;
    let stty = |arg: &str| {
        std::process::Command::new("stty")
            .arg(arg)
            .stdin(std::process::Stdio::inherit())
            .status()
    };
    stty("-echo")?;
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    let restored = stty("echo");
    eprintln!();
    read?;
    restored?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}
