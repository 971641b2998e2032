//! How long to wait before trying again: after a failure (connections, reply delivery, store
//! trouble) and after a rejected login, where retrying soon cannot help.

use std::time::Duration;

use rand::Rng;

/// Exponential backoff with jitter: 1s, 2s, 4s … 256s (plus up to a quarter), so at most about
/// five minutes.
pub fn backoff_delay(failures: u32) -> Duration {
    let base = Duration::from_secs(1u64 << failures.min(8)).min(Duration::from_secs(300));
    let jitter = rand::thread_rng().gen_range(0.0..0.25);
    base.mul_f64(1.0 + jitter)
}

/// After a rejected login: 10 minutes, doubling up to an hour. At most two failed logins per
/// account in any first 10 minutes, however the process is restarted by a reload.
pub fn login_backoff(rejections: u32) -> Duration {
    const FIRST: Duration = Duration::from_secs(10 * 60);
    const MAX: Duration = Duration::from_secs(60 * 60);
    FIRST
        .saturating_mul(1u32 << rejections.saturating_sub(1).min(3))
        .min(MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejected_logins_wait_ten_minutes_doubling_to_an_hour() {
        let minutes = |n| login_backoff(n).as_secs() / 60;
        assert_eq!([1, 2, 3, 4, 5, 40].map(minutes), [10, 20, 40, 60, 60, 60]);
    }

    #[test]
    fn failures_back_off_exponentially_up_to_about_five_minutes() {
        let secs = |n| backoff_delay(n).as_secs_f64();
        assert!((1.0..1.25).contains(&secs(0)));
        assert!((4.0..5.0).contains(&secs(2)));
        assert!((256.0..320.0).contains(&secs(30)));
    }
}
