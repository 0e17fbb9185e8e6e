//! Who the client is: its address (behind trusted proxies), how much of it reaches Kafka, and
//! how often it may fail to authenticate.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;

/// An IP network, like `10.0.0.0/8` or `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{s}` is not an IP network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}`: prefix length must be 0..={max}"))?,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl Cidr {
    /// Whether `ip` is in this network (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                mask(u32::from(net).into(), self.prefix, 32)
                    == mask(u32::from(ip).into(), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                mask(u128::from(net), self.prefix, 128) == mask(u128::from(ip), self.prefix, 128)
            }
            _ => false,
        }
    }
}

fn mask(bits: u128, prefix: u8, width: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        bits >> (width - prefix)
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// The client's address: the TCP peer's, unless the peer is a trusted proxy; then the
/// right-most address in `X-Forwarded-For` that is not itself a trusted proxy. Entries a client
/// wrote itself (left of what the proxies appended) are never believed.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[Cidr]) -> IpAddr {
    let peer = canonical(peer);
    if !trusted.iter().any(|c| c.contains(peer)) {
        return peer;
    }
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>().map(canonical) else {
            // An unparseable hop: stop at the last address we could trust.
            break;
        };
        client = ip;
        if !trusted.iter().any(|c| c.contains(ip)) {
            break;
        }
    }
    client
}

/// The address with its host part zeroed: IPv4 to its /24, IPv6 to its /48. Enough for
/// geography and abuse analysis, not enough to single out a household.
pub fn truncate(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::V4(Ipv4Addr::new(a, b, c, 0))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0))
        }
    }
}

/// Limits how often one client address may fail to authenticate, so tokens cannot be
/// brute-forced: past `max_failures` within `window`, the address is refused with 429 (before
/// any token lookup) until the window has passed since its first failure. An IPv6 client is
/// counted by its /64, the smallest block a network hands one subscriber, so it cannot start
/// afresh from each of its 2^64 addresses; an IPv4 client by its whole address.
#[derive(Debug)]
pub struct AuthFailures {
    max_failures: u32,
    window: Duration,
    seen: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

/// Addresses tracked at most; past it the oldest windows are dropped first.
const MAX_TRACKED: usize = 100_000;

impl AuthFailures {
    pub fn new(max_failures: u32, window: Duration) -> AuthFailures {
        AuthFailures {
            max_failures,
            window,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(wait)` while `ip` is blocked.
    pub fn blocked(&self, ip: IpAddr) -> Option<Duration> {
        let seen = self.seen.lock().ok()?;
        let (start, count) = *seen.get(&failure_key(ip))?;
        let left = self.window.checked_sub(start.elapsed())?;
        (count >= self.max_failures).then_some(left)
    }

    /// Counts a failure of `ip`.
    pub fn fail(&self, ip: IpAddr) {
        let ip = failure_key(ip);
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        let now = Instant::now();
        if seen.len() >= MAX_TRACKED && !seen.contains_key(&ip) {
            let window = self.window;
            seen.retain(|_, (start, _)| now.duration_since(*start) < window);
            if seen.len() >= MAX_TRACKED {
                seen.clear();
            }
        }
        let entry = seen.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

/// Whose failures `ip`'s count toward: an IPv4 address (IPv4-mapped IPv6 included) itself, an
/// IPv6 address its /64.
fn failure_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u128::MAX >> 64))),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs_parse_and_match() {
        let net: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains(ip("10.1.2.3")));
        assert!(net.contains(ip("::ffff:10.1.2.3")));
        assert!(!net.contains(ip("11.0.0.1")));
        let one: Cidr = "192.168.1.7".parse().unwrap();
        assert!(one.contains(ip("192.168.1.7")) && !one.contains(ip("192.168.1.8")));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains(ip("8.8.8.8")));
        for bad in ["10.0.0.0/33", "nonsense", "10.0.0/8", "::/129"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "6.6.6.6, 203.0.113.9, 10.0.0.2".parse().unwrap(),
        );
        // From a trusted proxy: the right-most untrusted hop; the client-written 6.6.6.6 is ignored.
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("203.0.113.9"));
        // From anyone else: the peer, whatever the header says.
        assert_eq!(
            client_ip(ip("198.51.100.4"), &h, &trusted),
            ip("198.51.100.4")
        );
        // No header: the proxy itself.
        assert_eq!(
            client_ip(ip("10.0.0.1"), &HeaderMap::new(), &trusted),
            ip("10.0.0.1")
        );
        h.insert("x-forwarded-for", "garbage, 10.0.0.3".parse().unwrap());
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("10.0.0.3"));
    }

    #[test]
    fn truncation_keeps_the_network() {
        assert_eq!(truncate(ip("203.0.113.77")), ip("203.0.113.0"));
        assert_eq!(truncate(ip("2001:db8:1234:5678::1")), ip("2001:db8:1234::"));
        assert_eq!(truncate(ip("::ffff:203.0.113.77")), ip("203.0.113.0"));
    }

    #[test]
    fn repeated_failures_block_an_address_only() {
        let gate = AuthFailures::new(3, Duration::from_secs(60));
        let (a, b) = (ip("198.51.100.1"), ip("198.51.100.2"));
        for _ in 0..2 {
            gate.fail(a);
        }
        assert_eq!(gate.blocked(a), None);
        gate.fail(a);
        assert!(gate.blocked(a).is_some_and(|d| d > Duration::from_secs(50)));
        assert_eq!(gate.blocked(b), None);
    }

    #[test]
    fn an_ipv6_client_is_counted_by_its_64() {
        let gate = AuthFailures::new(3, Duration::from_secs(60));
        // One client rotating through its /64: three addresses, one count.
        for host in [
            "2001:db8:1:2::1",
            "2001:db8:1:2::2",
            "2001:db8:1:2:ffff:ffff:ffff:ffff",
        ] {
            assert_eq!(gate.blocked(ip(host)), None);
            gate.fail(ip(host));
        }
        assert!(gate.blocked(ip("2001:db8:1:2:abcd::7")).is_some());
        // The neighbouring /64 is another subscriber.
        assert_eq!(gate.blocked(ip("2001:db8:1:3::1")), None);
    }

    #[test]
    fn ipv4_is_counted_by_address_mapped_or_not() {
        let gate = AuthFailures::new(2, Duration::from_secs(60));
        gate.fail(ip("::ffff:198.51.100.1"));
        gate.fail(ip("198.51.100.1"));
        assert!(gate.blocked(ip("198.51.100.1")).is_some());
        assert!(gate.blocked(ip("::ffff:198.51.100.1")).is_some());
        // Neither its /24 neighbour nor the IPv6 network whose top bits look alike.
        assert_eq!(gate.blocked(ip("198.51.100.2")), None);
        assert_eq!(gate.blocked(ip("::198.51.100.1")), None);
    }

    #[test]
    fn failure_keys() {
        assert_eq!(
            failure_key(ip("2001:db8:a:b:c:d:e:f")),
            ip("2001:db8:a:b::")
        );
        assert_eq!(failure_key(ip("::ffff:203.0.113.7")), ip("203.0.113.7"));
        assert_eq!(failure_key(ip("203.0.113.7")), ip("203.0.113.7"));
    }
}
