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
