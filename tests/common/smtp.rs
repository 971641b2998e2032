//! A TCP proxy in front of a lab port that a test can switch off and on: "off" refuses service
//! (new connections are closed at once, open ones are cut), so the code under test sees the SMTP
//! server down without the shared lab being touched.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct SwitchProxy {
    pub port: u16,
    /// Connections accepted while on (each one is a session with the real server).
    pub sessions: Arc<AtomicUsize>,
    /// Connections refused while off.
    pub refused: Arc<AtomicUsize>,
    up: watch::Sender<bool>,
}

impl SwitchProxy {
    /// Starts a proxy to 127.0.0.1:`target`, initially `up` or down.
    pub async fn start(target: u16, up: bool) -> SwitchProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = watch::channel(up);
        let sessions = Arc::new(AtomicUsize::new(0));
        let refused = Arc::new(AtomicUsize::new(0));
        let (s, r) = (sessions.clone(), refused.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !*rx.borrow() {
                    r.fetch_add(1, Ordering::SeqCst);
                    drop(client);
                    continue;
                }
                s.fetch_add(1, Ordering::SeqCst);
                let mut rx = rx.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
                        return;
                    };
                    let (mut client, mut server) = (client, server);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = rx.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        SwitchProxy {
            port,
            sessions,
            refused,
            up: tx,
        }
    }

    pub fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }
}
