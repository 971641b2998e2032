//! Fault-injecting TCP proxies for tests, in front of a lab port: one cuts the connection when
//! the client sends a chosen command, one goes silent like a network partition, others imitate
//! server quirks.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct CutProxy {
    pub port: u16,
    pub cuts: Arc<AtomicUsize>,
}

/// Starts a proxy to 127.0.0.1:`target`; a client chunk containing `trigger` closes the connection.
pub async fn cut_on(target: u16, trigger: &'static [u8]) -> CutProxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let cuts = Arc::new(AtomicUsize::new(0));
    let counter = cuts.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let down = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                });
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match cr.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if buf[..n].windows(trigger.len()).any(|w| w == trigger) {
                        counter.fetch_add(1, Ordering::SeqCst);
                        break;
                    }
                    if sw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                down.abort();
            });
        }
    });
    CutProxy { port, cuts }
}

/// A transparent proxy that counts the connections made through it.
pub struct CountingProxy {
    pub port: u16,
    pub connections: Arc<AtomicUsize>,
}

impl CountingProxy {
    pub fn count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Starts a proxy to 127.0.0.1:`target` that forwards everything and counts connections.
pub async fn counting(target: u16) -> CountingProxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut server) = TcpStream::connect(("127.0.0.1", target)).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    CountingProxy { port, connections }
}

/// A proxy in front of an IMAP port that imitates a server which never pushes during IDLE: while
/// the client is in IDLE, untagged responses (`* 3 EXISTS`, `* OK Still here`) are withheld.
/// Everything else passes unchanged.
pub struct MuteIdleProxy {
    pub port: u16,
    /// IDLE commands the client sent.
    pub idles: Arc<AtomicUsize>,
    /// Untagged lines withheld while the client was in IDLE.
    pub withheld: Arc<AtomicUsize>,
}

pub async fn mute_idle(target: u16) -> MuteIdleProxy {
    use std::sync::atomic::AtomicBool;
    use tokio::io::AsyncBufReadExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let idles = Arc::new(AtomicUsize::new(0));
    let withheld = Arc::new(AtomicUsize::new(0));
    let (idles2, withheld2) = (idles.clone(), withheld.clone());
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (idles, withheld) = (idles2.clone(), withheld2.clone());
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
                    return;
                };
                let idling = Arc::new(AtomicBool::new(false));
                let (mut cr, mut cw) = client.into_split();
                let (sr, mut sw) = server.into_split();
                let in_idle = idling.clone();
                let down = tokio::spawn(async move {
                    let mut sr = tokio::io::BufReader::new(sr);
                    let mut line = Vec::new();
                    loop {
                        line.clear();
                        match sr.read_until(b'\n', &mut line).await {
                            Ok(0) | Err(_) => break,
                            Ok(_) => {}
                        }
                        if in_idle.load(Ordering::SeqCst) && line.starts_with(b"* ") {
                            withheld.fetch_add(1, Ordering::SeqCst);
                            continue;
                        }
                        if cw.write_all(&line).await.is_err() {
                            break;
                        }
                    }
                });
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match cr.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let chunk = &buf[..n];
                    if chunk.ends_with(b" IDLE\r\n") {
                        idles.fetch_add(1, Ordering::SeqCst);
                        idling.store(true, Ordering::SeqCst);
                    } else if chunk.starts_with(b"DONE\r\n") {
                        idling.store(false, Ordering::SeqCst);
                    }
                    if sw.write_all(chunk).await.is_err() {
                        break;
                    }
                }
                down.abort();
            });
        }
    });
    MuteIdleProxy {
        port,
        idles,
        withheld,
    }
}

/// What a [`line_proxy`] does with a line from the client.
pub enum ClientLine {
    /// Pass it on to the server.
    Forward(Vec<u8>),
    /// Answer the client with these bytes; the server never sees the line.
    Answer(Vec<u8>),
}

/// One connection's rules in a [`line_proxy`]: every line from the server goes through the
/// first (which returns the lines the client gets instead), every line from the client through
/// the second. They run on two tasks; state they share is theirs to share.
pub type LineRules = (
    Box<dyn FnMut(Vec<u8>) -> Vec<Vec<u8>> + Send>,
    Box<dyn FnMut(Vec<u8>) -> futures::future::BoxFuture<'static, ClientLine> + Send>,
);

/// A proxy to 127.0.0.1:`target` for a line-based protocol (plain POP3) that hands every line to
/// the rules `per_connection` makes for each new connection. Returns its port.
pub async fn line_proxy(
    target: u16,
    per_connection: impl Fn() -> LineRules + Send + Sync + 'static,
) -> u16 {
    use tokio::io::AsyncBufReadExt;
    use tokio::sync::Mutex;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (mut from_server, mut from_client) = per_connection();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
                    return;
                };
                let (cr, cw) = client.into_split();
                let (sr, mut sw) = server.into_split();
                // Both directions write to the client: server lines, and answers to its lines.
                let cw = Arc::new(Mutex::new(cw));
                let down_cw = cw.clone();
                let down = tokio::spawn(async move {
                    let mut sr = tokio::io::BufReader::new(sr);
                    loop {
                        let mut line = Vec::new();
                        match sr.read_until(b'\n', &mut line).await {
                            Ok(0) | Err(_) => break,
                            Ok(_) => {}
                        }
                        let mut w = down_cw.lock().await;
                        for out in from_server(line) {
                            if w.write_all(&out).await.is_err() {
                                return;
                            }
                        }
                    }
                });
                let mut cr = tokio::io::BufReader::new(cr);
                loop {
                    let mut line = Vec::new();
                    match cr.read_until(b'\n', &mut line).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    let sent = match from_client(line).await {
                        ClientLine::Forward(line) => sw.write_all(&line).await,
                        ClientLine::Answer(reply) => cw.lock().await.write_all(&reply).await,
                    };
                    if sent.is_err() {
                        break;
                    }
                }
                down.abort();
            });
        }
    });
    port
}

/// A proxy in front of the plain POP3 port `target` that takes TOP out of CAPA: a server that
/// cannot give a mail's header alone. Returns its port.
pub async fn pop3_without_top(target: u16) -> u16 {
    line_proxy(target, || {
        (
            Box::new(|line: Vec<u8>| {
                if line.eq_ignore_ascii_case(b"TOP\r\n") {
                    vec![]
                } else {
                    vec![line]
                }
            }),
            Box::new(|line| Box::pin(async move { ClientLine::Forward(line) })),
        )
    })
    .await
}

/// A proxy in front of a plain POP3 port that imitates RFC 2449 LOGIN-DELAY (as Debian's Cyrus
/// does): CAPA lists `LOGIN-DELAY <secs>`, and a PASS less than `secs` after the previous
/// accepted one is answered `-ERR [LOGIN-DELAY] ...` without reaching the server.
pub struct LoginDelayProxy {
    pub port: u16,
    /// Logins refused as too early.
    pub too_early: Arc<AtomicUsize>,
    /// Logins passed on to the server.
    pub logins: Arc<AtomicUsize>,
}

pub async fn login_delay(target: u16, secs: u64) -> LoginDelayProxy {
    use std::sync::atomic::AtomicBool;
    use std::time::{Duration, Instant};
    let too_early = Arc::new(AtomicUsize::new(0));
    let logins = Arc::new(AtomicUsize::new(0));
    let last_login: Arc<std::sync::Mutex<Option<Instant>>> = Arc::default();
    let (early2, logins2) = (too_early.clone(), logins.clone());
    let port = line_proxy(target, move || {
        let (too_early, logins, last_login) = (early2.clone(), logins2.clone(), last_login.clone());
        let in_capa = Arc::new(AtomicBool::new(false));
        let down_capa = in_capa.clone();
        (
            Box::new(move |line| {
                if line == b".\r\n" && down_capa.swap(false, Ordering::SeqCst) {
                    vec![format!("LOGIN-DELAY {secs}\r\n").into_bytes(), line]
                } else {
                    vec![line]
                }
            }),
            Box::new(move |line| {
                let upper = line.to_ascii_uppercase();
                if upper.starts_with(b"CAPA") {
                    in_capa.store(true, Ordering::SeqCst);
                }
                let mut answer = None;
                if upper.starts_with(b"PASS ") {
                    let now = Instant::now();
                    let mut last = last_login.lock().unwrap();
                    if last.is_some_and(|t| now - t < Duration::from_secs(secs)) {
                        too_early.fetch_add(1, Ordering::SeqCst);
                        answer = Some(format!(
                            "-ERR [LOGIN-DELAY] Logins must be at least {secs} seconds apart\r\n"
                        ));
                    } else {
                        *last = Some(now);
                        logins.fetch_add(1, Ordering::SeqCst);
                    }
                }
                let decided = match answer {
                    Some(refusal) => ClientLine::Answer(refusal.into_bytes()),
                    None => ClientLine::Forward(line),
                };
                Box::pin(std::future::ready(decided))
            }),
        )
    })
    .await;
    LoginDelayProxy {
        port,
        too_early,
        logins,
    }
}

/// A proxy that can go silent like a network partition: while stalled, nothing is forwarded in
/// either direction and no connection is closed (the packets are dropped, the sockets stay
/// open, so neither end notices anything but silence); a new connection is accepted but gets
/// no answer. Bytes, and a close, that arrived in the meantime are passed on after
/// [`StallProxy::resume`], as TCP retransmits them once the path is back. TLS passes through
/// untouched.
pub struct StallProxy {
    pub port: u16,
    stalled: tokio::sync::watch::Sender<bool>,
}

impl StallProxy {
    pub fn stall(&self) {
        self.stalled.send_replace(true);
    }

    pub fn resume(&self) {
        self.stalled.send_replace(false);
    }
}

/// Starts a proxy to 127.0.0.1:`target` that forwards everything until stalled.
pub async fn stallable(target: u16) -> StallProxy {
    use tokio::sync::watch;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stalled, state) = watch::channel(false);
    /// Waits while the path is stalled; false once the proxy is gone (the test ended).
    async fn open(state: &mut watch::Receiver<bool>) -> bool {
        state.wait_for(|stalled| !*stalled).await.is_ok()
    }
    async fn pump(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        mut state: watch::Receiver<bool>,
    ) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let read = from.read(&mut buf).await;
            // What arrived during a stall is held back, the end of the stream included.
            if !open(&mut state).await {
                return;
            }
            let n = match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if to.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    }
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let mut state = state.clone();
            tokio::spawn(async move {
                if !open(&mut state).await {
                    return;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
                    return;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::join!(pump(cr, sw, state.clone()), pump(sr, cw, state));
            });
        }
    });
    StallProxy { port, stalled }
}

/// A proxy in front of a plain POP3 port that watches the client's commands: it counts those
/// sent before any reply came back since the previous one (pipelined, RFC 2449), can take
/// PIPELINING out of the server's CAPA (a server that does not offer it), and can run `before`
/// (another session changing the maildrop) right before the first command that starts with a
/// given word reaches the server.
pub struct Pop3Watch {
    pub port: u16,
    /// Commands the client sent.
    pub commands: Arc<AtomicUsize>,
    /// Commands sent while the one before was still unanswered.
    pub pipelined: Arc<AtomicUsize>,
}

impl Pop3Watch {
    pub fn commands(&self) -> usize {
        self.commands.load(Ordering::SeqCst)
    }

    pub fn pipelined(&self) -> usize {
        self.pipelined.load(Ordering::SeqCst)
    }
}

/// What runs once, right before the first command starting with the word is passed on.
pub type BeforeCommand = (&'static str, futures::future::BoxFuture<'static, ()>);

pub async fn pop3_watch(
    target: u16,
    hide_pipelining: bool,
    before: Option<BeforeCommand>,
) -> Pop3Watch {
    use std::sync::atomic::AtomicBool;
    let commands = Arc::new(AtomicUsize::new(0));
    let pipelined = Arc::new(AtomicUsize::new(0));
    let (commands2, pipelined2) = (commands.clone(), pipelined.clone());
    let before = Arc::new(tokio::sync::Mutex::new(before));
    let port = line_proxy(target, move || {
        let (commands, pipelined, before) = (commands2.clone(), pipelined2.clone(), before.clone());
        // Set by every server line, cleared by every client command.
        let replied = Arc::new(AtomicBool::new(false));
        let server_replied = replied.clone();
        (
            Box::new(move |line| {
                // Before the client can see the reply, so it cannot race ahead of it.
                server_replied.store(true, Ordering::SeqCst);
                if hide_pipelining && line.eq_ignore_ascii_case(b"PIPELINING\r\n") {
                    vec![]
                } else {
                    vec![line]
                }
            }),
            Box::new(move |line| {
                commands.fetch_add(1, Ordering::SeqCst);
                if !replied.swap(false, Ordering::SeqCst) {
                    pipelined.fetch_add(1, Ordering::SeqCst);
                }
                let before = before.clone();
                Box::pin(async move {
                    let mut hook = before.lock().await;
                    if hook.as_ref().is_some_and(|(word, _)| {
                        line.to_ascii_uppercase().starts_with(word.as_bytes())
                    }) {
                        if let Some((_, action)) = hook.take() {
                            action.await;
                        }
                    }
                    ClientLine::Forward(line)
                })
            }),
        )
    })
    .await;
    Pop3Watch {
        port,
        commands,
        pipelined,
    }
}

/// A proxy in front of the plain IMAP port that imitates a server whose untagged responses
/// async-imap's parser cannot read: after each `* n EXPUNGE` it adds `* n EXPUNGED`, before each
/// `* n EXISTS` a copy with two spaces, before each FETCH response `* FOO bar` and an unknown
/// response carrying a literal. It also writes EXPUNGE and the OK of untagged status lines in
/// lower case, which is legal. The greeting, tagged lines and literals (the mails) pass unchanged.
pub struct OddUntaggedProxy {
    pub port: u16,
    /// Responses the parser cannot read that were sent to the client.
    pub unreadable: Arc<AtomicUsize>,
    /// `* n EXPUNGED` lines among them.
    pub expunged: Arc<AtomicUsize>,
}

pub async fn odd_untagged(target: u16) -> OddUntaggedProxy {
    let unreadable = Arc::new(AtomicUsize::new(0));
    let expunged = Arc::new(AtomicUsize::new(0));
    let (unreadable2, expunged2) = (unreadable.clone(), expunged.clone());
    let port = line_proxy(target, move || {
        let (unreadable, expunged) = (unreadable2.clone(), expunged2.clone());
        let mut greeted = false;
        // Bytes of a literal still to come: they are mail, never rewritten.
        let mut literal = 0usize;
        (
            Box::new(move |line: Vec<u8>| {
                let starts_response = literal == 0;
                let in_literal = literal.min(line.len());
                literal -= in_literal;
                if literal == 0 {
                    literal = literal_at_end(&line[in_literal..]);
                }
                if !starts_response || !std::mem::replace(&mut greeted, true) {
                    return vec![line];
                }
                let Ok(text) = std::str::from_utf8(&line) else {
                    return vec![line];
                };
                let mut words = text.splitn(3, ' ');
                let odd: Vec<String> = match (words.next(), words.next(), words.next()) {
                    (Some("*"), Some(n), Some("EXPUNGE\r\n")) => {
                        expunged.fetch_add(1, Ordering::SeqCst);
                        vec![format!("* {n} expunge\r\n"), format!("* {n} EXPUNGED\r\n")]
                    }
                    (Some("*"), Some(n), Some("EXISTS\r\n")) => {
                        vec![format!("*  {n} EXISTS\r\n"), text.to_string()]
                    }
                    (Some("*"), Some(_), Some(rest)) if rest.starts_with("FETCH ") => vec![
                        "* FOO bar\r\n".into(),
                        "* FOO {5}\r\n(x y)\r\n".into(),
                        text.to_string(),
                    ],
                    (Some("*"), Some("OK"), Some(rest)) => {
                        return vec![format!("* ok {rest}").into()]
                    }
                    _ => return vec![line],
                };
                // All but the server's own response (the lower-case expunge is readable).
                unreadable.fetch_add(odd.len() - 1, Ordering::SeqCst);
                odd.into_iter().map(String::into_bytes).collect()
            }),
            Box::new(|line| Box::pin(std::future::ready(ClientLine::Forward(line)))),
        )
    })
    .await;
    OddUntaggedProxy {
        port,
        unreadable,
        expunged,
    }
}

/// The length of the IMAP literal announced at the end of a server line (`... {123}\r\n`), or 0.
fn literal_at_end(line: &[u8]) -> usize {
    let text = String::from_utf8_lossy(line);
    text.trim_end()
        .strip_suffix('}')
        .and_then(|t| t.rsplit_once('{'))
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(0)
}
