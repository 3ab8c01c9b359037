//! Failed attempts per address, with a bounded table.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use crate::config::RateLimitConfig;

/// IPv4 addresses count one by one, IPv6 ones per /64 (what one host or
/// customer usually gets).
fn bucket(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    window_start: SystemTime,
    failures: u32,
    banned_until: Option<SystemTime>,
}

#[derive(Debug)]
pub(crate) struct RateLimiter {
    table: Mutex<HashMap<IpAddr, Entry>>,
}

fn elapsed(since: SystemTime, now: SystemTime) -> Duration {
    now.duration_since(since).unwrap_or_default()
}

impl RateLimiter {
    pub(crate) fn new() -> Self {
        RateLimiter {
            table: Mutex::new(HashMap::new()),
        }
    }

    /// How much longer `ip` is refused, if it is.
    pub(crate) fn banned(
        &self,
        cfg: &RateLimitConfig,
        ip: IpAddr,
        now: SystemTime,
    ) -> Option<Duration> {
        if cfg.max_failures == 0 {
            return None;
        }
        let table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let until = table.get(&bucket(ip))?.banned_until?;
        until.duration_since(now).ok().filter(|d| !d.is_zero())
    }

    /// Counts a failed attempt; returns whether `ip` is now banned.
    pub(crate) fn failed(&self, cfg: &RateLimitConfig, ip: IpAddr, now: SystemTime) -> bool {
        if cfg.max_failures == 0 {
            return false;
        }
        let window = Duration::from_secs(cfg.window_s);
        let key = bucket(ip);
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if !table.contains_key(&key) && table.len() >= cfg.max_tracked.max(1) {
            Self::make_room(&mut table, window, now);
            if table.len() >= cfg.max_tracked.max(1) {
                // Every tracked address is banned: the new one goes
                // uncounted rather than growing the table.
                return false;
            }
        }
        let e = table.entry(key).or_insert(Entry {
            window_start: now,
            failures: 0,
            banned_until: None,
        });
        if e.banned_until.is_some_and(|u| u <= now) {
            *e = Entry {
                window_start: now,
                failures: 0,
                banned_until: None,
            };
        }
        if elapsed(e.window_start, now) > window {
            e.window_start = now;
            e.failures = 0;
        }
        e.failures = e.failures.saturating_add(1);
        if e.failures >= cfg.max_failures && e.banned_until.is_none() {
            e.banned_until = Some(now + Duration::from_secs(cfg.ban_s));
            return true;
        }
        false
    }

    /// Drops what has expired; if nothing has, the unbanned entry whose
    /// window started first.
    fn make_room(table: &mut HashMap<IpAddr, Entry>, window: Duration, now: SystemTime) {
        table.retain(|_, e| match e.banned_until {
            Some(u) => u > now,
            None => elapsed(e.window_start, now) <= window,
        });
        if let Some(oldest) = table
            .iter()
            .filter(|(_, e)| e.banned_until.is_none())
            .min_by_key(|(_, e)| e.window_start)
            .map(|(k, _)| *k)
        {
            table.remove(&oldest);
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.table.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RateLimitConfig {
        RateLimitConfig {
            max_failures: 3,
            window_s: 60,
            ban_s: 30,
            max_tracked: 4,
        }
    }

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s)
    }

    #[test]
    fn bans_after_max_failures_for_ban_s() {
        let r = RateLimiter::new();
        let ip: IpAddr = "192.0.2.7".parse().expect("ip");
        assert!(!r.failed(&cfg(), ip, t(0)));
        assert!(!r.failed(&cfg(), ip, t(1)));
        assert_eq!(r.banned(&cfg(), ip, t(1)), None);
        assert!(r.failed(&cfg(), ip, t(2)));
        assert_eq!(r.banned(&cfg(), ip, t(2)), Some(Duration::from_secs(30)));
        assert_eq!(r.banned(&cfg(), ip, t(31)), Some(Duration::from_secs(1)));
        assert_eq!(r.banned(&cfg(), ip, t(32)), None);
        // Another address is not affected.
        let other: IpAddr = "192.0.2.8".parse().expect("ip");
        assert_eq!(r.banned(&cfg(), other, t(2)), None);
        // After the ban, counting starts over.
        assert!(!r.failed(&cfg(), ip, t(33)));
        assert_eq!(r.banned(&cfg(), ip, t(33)), None);
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up() {
        let r = RateLimiter::new();
        let ip: IpAddr = "192.0.2.7".parse().expect("ip");
        assert!(!r.failed(&cfg(), ip, t(0)));
        assert!(!r.failed(&cfg(), ip, t(10)));
        assert!(!r.failed(&cfg(), ip, t(100)));
        assert!(!r.failed(&cfg(), ip, t(101)));
        assert!(r.failed(&cfg(), ip, t(102)));
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        let r = RateLimiter::new();
        for (i, ip) in ["2001:db8::1", "2001:db8::2", "2001:db8::ffff:1"]
            .into_iter()
            .enumerate()
        {
            r.failed(&cfg(), ip.parse().expect("ip"), t(i as u64));
        }
        assert!(
            r.banned(&cfg(), "2001:db8::9".parse().expect("ip"), t(3))
                .is_some()
        );
        assert!(
            r.banned(&cfg(), "2001:db8:1::9".parse().expect("ip"), t(3))
                .is_none()
        );
        for i in 0..3 {
            r.failed(&cfg(), "::ffff:192.0.2.9".parse().expect("ip"), t(i));
        }
        assert!(
            r.banned(&cfg(), "192.0.2.9".parse().expect("ip"), t(3))
                .is_some()
        );
    }

    #[test]
    fn the_table_stays_bounded() {
        let r = RateLimiter::new();
        for i in 0..100u32 {
            let ip = IpAddr::from([10, 0, (i >> 8) as u8, i as u8]);
            r.failed(&cfg(), ip, t(u64::from(i)));
            assert!(r.tracked() <= 4);
        }
        // A banned address survives the churn.
        let bad: IpAddr = "192.0.2.7".parse().expect("ip");
        for s in 200..203 {
            r.failed(&cfg(), bad, t(s));
        }
        for i in 0..50u32 {
            r.failed(&cfg(), IpAddr::from([10, 1, 0, i as u8]), t(203));
        }
        assert!(r.banned(&cfg(), bad, t(204)).is_some());
    }

    #[test]
    fn zero_disables() {
        let r = RateLimiter::new();
        let c = RateLimitConfig {
            max_failures: 0,
            ..cfg()
        };
        let ip: IpAddr = "192.0.2.7".parse().expect("ip");
        for s in 0..100 {
            assert!(!r.failed(&c, ip, t(s)));
        }
        assert_eq!(r.banned(&c, ip, t(100)), None);
    }
}
