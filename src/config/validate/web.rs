//! Rules of `[web]`: the accounts page holds every mailbox's password, so it is served only
//! with a login, and over plain HTTP only on loopback unless the admin says a proxy terminates
//! TLS in front of it.

use std::net::SocketAddr;

use super::{Checker, Key, ADMIN_HASH};
use crate::config::WebConfig;

/// The shortest idle time before a session is logged out; shorter would log the owner out
/// while they type a password.
const MIN_SESSION_IDLE_SECS: u64 = 60;

pub fn check(c: &mut Checker, web: &mut WebConfig, http_listen: Option<SocketAddr>) {
    let at = Key::section("web");
    web.resolved_admin_hash = c.secret(at.clone(), &ADMIN_HASH, &web.hash_source(), true);
    if let Some(hash) = &web.resolved_admin_hash {
        if let Err(problem) = crate::password_hash::check(hash.expose()) {
            let key = match (&web.admin_password_hash_file, &web.admin_password_hash_env) {
                (Some(_), _) => "admin_password_hash_file",
                (_, Some(_)) => "admin_password_hash_env",
                _ => "admin_password_hash",
            };
            c.error(
                at.clone().field(key),
                format!(
                    "{problem}; make one with `mail2ticket web hash-password` (it reads the \
                     password on stdin)"
                ),
            );
        }
    }
    match (&web.tls_cert_file, &web.tls_key_file) {
        (Some(cert), Some(key)) => {
            c.readable_file(at.clone().field("tls_cert_file"), cert);
            c.readable_file(at.clone().field("tls_key_file"), key);
        }
        (Some(_), None) => c.error(
            at.clone().field("tls_key_file"),
            "missing: tls_cert_file needs its private key in tls_key_file",
        ),
        (None, Some(_)) => c.error(
            at.clone().field("tls_cert_file"),
            "missing: tls_key_file needs its certificate (chain) in tls_cert_file",
        ),
        (None, None) => {}
    }
    if !web.listen.ip().is_loopback() && !web.tls() && !web.allow_plain_http {
        c.error(
            at.clone().field("listen"),
            format!(
                "{} is reachable from other machines, and the page shows every mailbox's \
                 settings and takes their passwords: serve it over https (tls_cert_file and \
                 tls_key_file), or set allow_plain_http = true when a reverse proxy in front of \
                 it terminates TLS (see docs/web.md)",
                web.listen
            ),
        );
    }
    if http_listen == Some(web.listen) {
        c.error(
            at.clone().field("listen"),
            "is the same address as [daemon] http_listen: give the page a port of its own",
        );
    }
    if web.session_idle.as_secs() < MIN_SESSION_IDLE_SECS {
        c.error(at.field("session_idle"), "must be at least 1m");
    }
}
