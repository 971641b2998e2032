//! A fault-injecting TCP proxy for tests: forwards to a lab port and cuts the connection when the
//! client sends a chosen command (before forwarding it).

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
