//! Logged-in sessions and the brake on password guessing.
//!
//! A session is a random 256-bit token in an HttpOnly, SameSite=Strict cookie, kept only in this
//! process's memory: a restart logs everybody out, which for a settings page is a fair price for
//! having no session store to protect. Each session has its own CSRF token, which every request
//! that changes something must carry (guard.rs).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

pub const COOKIE: &str = "m2t_session";

/// At most this many failed logins per minute from one client.
pub const LOGIN_TRIES_PER_MINUTE: usize = 5;
/// At most this many failed logins per minute from all clients together: guessing from many
/// addresses is slowed as well. Its price is that during such an attack the owner may have to
/// wait a minute too.
pub const ALL_LOGIN_TRIES_PER_MINUTE: usize = 20;
const THROTTLE_WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct Session {
    /// Short, not secret: names the session in the audit log (a hash of the token).
    pub id: String,
    pub csrf: String,
    pub client: IpAddr,
    last_seen: Instant,
}

pub struct Sessions {
    idle: Duration,
    live: Mutex<HashMap<String, Session>>,
    failures: Mutex<Failures>,
}

#[derive(Default)]
struct Failures {
    per_client: HashMap<IpAddr, VecDeque<Instant>>,
    all: VecDeque<Instant>,
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Compares two tokens in time independent of where they differ.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Sessions {
    pub fn new(idle: Duration) -> Sessions {
        Sessions {
            idle,
            live: Mutex::new(HashMap::new()),
            failures: Mutex::new(Failures::default()),
        }
    }

    /// A new session for a client that just logged in: `(cookie token, session)`.
    pub fn open(&self, client: IpAddr) -> (String, Session) {
        let token = random_token();
        let id = hex(&Sha256::digest(token.as_bytes())[..4]);
        let session = Session {
            id,
            csrf: random_token(),
            client,
            last_seen: Instant::now(),
        };
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let idle = self.idle;
        live.retain(|_, s| s.last_seen.elapsed() < idle);
        live.insert(token.clone(), session.clone());
        (token, session)
    }

    /// The session of `token` if it has been used within the idle time; using it counts.
    pub fn get(&self, token: &str) -> Option<Session> {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = live
            .get(token)
            .is_some_and(|s| s.last_seen.elapsed() < self.idle);
        if !fresh {
            live.remove(token);
            return None;
        }
        let session = live.get_mut(token)?;
        session.last_seen = Instant::now();
        Some(session.clone())
    }

    pub fn close(&self, token: &str) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.remove(token);
    }

    /// `Some(wait)` when `client` (or everybody) failed too often in the last minute: the login
    /// is refused without looking at the password, so the limit is no oracle either.
    pub fn login_blocked(&self, client: IpAddr) -> Option<Duration> {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let Failures { per_client, all } = &mut *f;
        prune(all, now);
        per_client.retain(|_, times| {
            prune(times, now);
            !times.is_empty()
        });
        let full = |times: &VecDeque<Instant>, limit: usize| {
            (times.len() >= limit)
                .then(|| {
                    times
                        .front()
                        .map(|t| THROTTLE_WINDOW.saturating_sub(now - *t))
                })
                .flatten()
        };
        let mine = per_client
            .get(&client)
            .and_then(|t| full(t, LOGIN_TRIES_PER_MINUTE));
        mine.or_else(|| full(all, ALL_LOGIN_TRIES_PER_MINUTE))
    }

    pub fn login_failed(&self, client: IpAddr) {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        f.all.push_back(now);
        f.per_client.entry(client).or_default().push_back(now);
    }
}

fn prune(times: &mut VecDeque<Instant>, now: Instant) {
    while times
        .front()
        .is_some_and(|t| now.duration_since(*t) >= THROTTLE_WINDOW)
    {
        times.pop_front();
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn a_session_lives_while_used_and_ends_at_logout() {
        let sessions = Sessions::new(Duration::from_secs(60));
        let (token, opened) = sessions.open(ip(1));
        let found = sessions.get(&token).expect("session");
        assert_eq!(found.csrf, opened.csrf);
        assert!(sessions.get("not-a-token").is_none());
        sessions.close(&token);
        assert!(sessions.get(&token).is_none());
    }

    #[test]
    fn an_idle_session_is_logged_out() {
        let sessions = Sessions::new(Duration::ZERO);
        let (token, _) = sessions.open(ip(1));
        assert!(sessions.get(&token).is_none());
    }

    #[test]
    fn five_failed_logins_a_minute_block_that_client() {
        let sessions = Sessions::new(Duration::from_secs(60));
        for _ in 0..LOGIN_TRIES_PER_MINUTE - 1 {
            sessions.login_failed(ip(1));
        }
        assert!(sessions.login_blocked(ip(1)).is_none());
        sessions.login_failed(ip(1));
        let wait = sessions.login_blocked(ip(1)).expect("blocked");
        assert!(wait <= THROTTLE_WINDOW && wait > Duration::from_secs(50));
        assert!(
            sessions.login_blocked(ip(2)).is_none(),
            "another client may still try"
        );
    }

    #[test]
    fn guessing_from_many_addresses_blocks_everybody() {
        let sessions = Sessions::new(Duration::from_secs(60));
        for n in 0..ALL_LOGIN_TRIES_PER_MINUTE {
            sessions.login_failed(ip(n as u8));
        }
        assert!(sessions.login_blocked(ip(200)).is_some());
    }

    #[test]
    fn tokens_compare_equal_only_when_equal() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "ab"));
    }
}
