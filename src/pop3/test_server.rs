//! Fake POP3 servers on loopback for the client's tests, and the one way those tests connect
//! to them ([`connect`], [`connected`], [`session`]).
//!
//! The fake servers take the client's commands as events, never as what arrived before a quiet
//! spell: a quiet gap of a few hundred milliseconds is also what a loaded machine puts between
//! two writes of a correct client. tokio's paused clock is no way out here: it jumps to the next
//! timer whenever the runtime is idle, and a loopback write whose delivery the kernel deferred
//! leaves it idle, so a command timeout would fire early.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::client::{Pop3Client, Pop3Error, Pop3Security, Pop3Timeouts};

/// A client TLS configuration that trusts no one: enough to start a handshake.
pub fn tls_config() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
    )
}

/// Generous deadlines: a test that means a timeout shortens them itself.
pub fn timeouts() -> Pop3Timeouts {
    Pop3Timeouts {
        connect: Duration::from_secs(5),
        command: Duration::from_secs(5),
    }
}

/// [`Pop3Client::connect`] to the fake server on `port`.
pub async fn connect(
    port: u16,
    security: Pop3Security,
    timeouts: Pop3Timeouts,
) -> Result<Pop3Client, Pop3Error> {
    Pop3Client::connect("127.0.0.1", port, security, tls_config(), timeouts).await
}

/// A client connected in plain text to `port`, greeted and with its capabilities (the fake
/// server's CAPA decides about pipelining).
pub async fn connected(port: u16) -> Pop3Client {
    connect(port, Pop3Security::Plain, timeouts())
        .await
        .unwrap()
}

/// A client connected to a fake server that greets with `+OK ready`, then follows `script`
/// (see [`fake_server`]), the first step being CAPA. The handle returns the commands received.
pub async fn session(
    script: Vec<(&'static str, Vec<u8>)>,
) -> (Pop3Client, JoinHandle<Vec<String>>) {
    let (port, server) = fake_server(b"+OK ready\r\n", script).await;
    (connected(port).await, server)
}

/// Listens on a loopback port and hands the first connection to `serve`, in a task.
pub async fn serve_one<F, Fut, T>(serve: F) -> (u16, JoinHandle<T>)
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        serve(socket).await
    });
    (port, handle)
}

/// Serves one connection: sends `greeting`, then for each (expected command, reply) reads
/// one command line, checks it and writes the reply. Returns the commands received.
pub async fn fake_server(
    greeting: &'static [u8],
    script: Vec<(&'static str, Vec<u8>)>,
) -> (u16, JoinHandle<Vec<String>>) {
    serve_one(move |socket| async move {
        let mut socket = BufReader::new(socket);
        let mut seen = Vec::new();
        if !greeting.is_empty() {
            socket.get_mut().write_all(greeting).await.unwrap();
        }
        for (expected, reply) in script {
            let mut line = Vec::new();
            if socket.read_until(b'\n', &mut line).await.unwrap() == 0 {
                break;
            }
            let line = String::from_utf8(line).unwrap();
            assert_eq!(line, format!("{expected}\r\n"));
            seen.push(line.trim_end().to_string());
            socket.get_mut().write_all(&reply).await.unwrap();
        }
        // Drain until the client closes, so a stray command is noticed.
        let mut rest = Vec::new();
        let _ = socket.read_to_end(&mut rest).await;
        assert!(
            rest.is_empty(),
            "unexpected: {:?}",
            String::from_utf8_lossy(&rest)
        );
        seen
    })
    .await
}

/// Serves greeting and `capa`, then hands the socket to `then`.
pub async fn serve_after_capa<F, Fut>(capa: &'static [u8], then: F) -> (u16, JoinHandle<()>)
where
    F: FnOnce(BufReader<TcpStream>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    serve_one(move |socket| async move {
        let mut socket = BufReader::new(socket);
        socket.get_mut().write_all(b"+OK ready\r\n").await.unwrap();
        assert_eq!(read_lines(&mut socket, 1).await, ["CAPA\r\n"]);
        assert_nothing_more_sent(&mut socket);
        socket.get_mut().write_all(capa).await.unwrap();
        then(socket).await;
    })
    .await
}

/// Reads the next `n` command lines, however long they take to come. (The bound only turns
/// a client that never sends them into a failure instead of a hang.)
pub async fn read_lines(socket: &mut BufReader<TcpStream>, n: usize) -> Vec<String> {
    let mut lines = Vec::with_capacity(n);
    while lines.len() < n {
        let mut line = Vec::new();
        let read = socket.read_until(b'\n', &mut line);
        match tokio::time::timeout(Duration::from_secs(30), read).await {
            Ok(Ok(k)) if k > 0 => lines.push(String::from_utf8(line).unwrap()),
            other => panic!("expected {n} command lines, got {lines:?}, then {other:?}"),
        }
    }
    lines
}

/// Asserts that the client has sent nothing beyond the lines read so far, at a moment when
/// it waits for a reply. The tests run on tokio's current-thread runtime, so while the fake
/// server runs the client is parked at an await point; before the server's next reply the
/// only one it can reach is the read of that reply, and everything it wrote up to there
/// is in the server's socket (loopback). So no quiet spell is needed: what is not there now
/// was not sent before the reply. (Should the kernel still hold back part of a write, this
/// could only miss a misbehaving client, never fail a correct one.)
pub fn assert_nothing_more_sent(socket: &mut BufReader<TcpStream>) {
    assert_eq!(
        tokio::runtime::Handle::current().runtime_flavor(),
        tokio::runtime::RuntimeFlavor::CurrentThread,
        "the client must not run while the fake server looks"
    );
    let buffered = String::from_utf8_lossy(socket.buffer()).into_owned();
    assert!(buffered.is_empty(), "sent before the reply: {buffered:?}");
    let mut more = [0u8; 512];
    match socket.get_ref().try_read(&mut more) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Ok(0) => panic!("the client closed the connection instead of waiting for the reply"),
        Ok(n) => panic!(
            "sent before the reply: {:?}",
            String::from_utf8_lossy(&more[..n])
        ),
        Err(e) => panic!("reading the client's socket: {e}"),
    }
}

/// A string that lives as long as the test, for a script's expected command.
pub fn leak(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}
