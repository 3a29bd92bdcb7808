//! Which address a request comes from, when reverse proxies stand between
//! the client and the server.

use std::net::IpAddr;

/// An address range in CIDR notation (`10.0.0.0/8`, `::1/128`); a bare
/// address is a range of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    network: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for IpRange {
    type Err = String;

    fn from_str(text: &str) -> Result<IpRange, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = addr.parse().map_err(|_| format!("{text:?} is no IP address or CIDR range"))?;
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= bits)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {bits}"))?,
            None => bits,
        };
        Ok(IpRange { network, prefix })
    }
}

impl IpRange {
    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self.network, addr.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// The reverse proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    ranges: Vec<IpRange>,
}

impl TrustedProxies {
    /// Parses a comma-separated list of addresses and CIDR ranges.
    pub fn parse(list: &str) -> Result<TrustedProxies, String> {
        let ranges = list
            .split(',')
            .filter(|part| !part.trim().is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        Ok(TrustedProxies { ranges })
    }

    /// Whether `addr` is one of the trusted proxies.
    pub fn is_proxy(&self, addr: IpAddr) -> bool {
        self.ranges.iter().any(|range| range.contains(addr))
    }

    /// The client of a request that reached us from `peer` with these
    /// `X-Forwarded-For` values: the peer itself unless it is a trusted
    /// proxy; otherwise the nearest address, read from the right, that is
    /// not one of ours (addresses further left were written by the client
    /// and prove nothing).
    pub fn client(&self, peer: IpAddr, forwarded_for: &[&str]) -> IpAddr {
        if !self.is_proxy(peer) {
            return peer;
        }
        let mut client = peer;
        for hop in forwarded_for.iter().rev().flat_map(|value| value.rsplit(',')) {
            let Ok(addr) = hop.trim().parse::<IpAddr>() else { return client };
            client = addr;
            if !self.is_proxy(addr) {
                break;
            }
        }
        client
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_contain_what_their_prefix_covers() {
        let r: IpRange = "10.1.0.0/16".parse().unwrap();
        assert!(r.contains(ip("10.1.200.3")));
        assert!(!r.contains(ip("10.2.0.1")));
        assert!(r.contains(ip("::ffff:10.1.0.9")), "IPv4-mapped counts as IPv4");
        let all: IpRange = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.1")));
        assert!("::1".parse::<IpRange>().unwrap().contains(ip("::1")));
        assert!(!"::1".parse::<IpRange>().unwrap().contains(ip("::2")));
        assert!("10.0.0.0/33".parse::<IpRange>().is_err());
        assert!("proxy.example".parse::<IpRange>().is_err());
    }

    #[test]
    fn the_client_is_the_first_untrusted_hop_from_the_right() {
        let proxies = TrustedProxies::parse("127.0.0.1, 10.0.0.0/8").unwrap();
        // Not from a proxy: the header is the client's own claim.
        assert_eq!(proxies.client(ip("198.51.100.1"), &["203.0.113.9"]), ip("198.51.100.1"));
        assert_eq!(proxies.client(ip("127.0.0.1"), &["203.0.113.9"]), ip("203.0.113.9"));
        // A forged entry on the left is skipped past.
        assert_eq!(proxies.client(ip("127.0.0.1"), &["6.6.6.6, 203.0.113.9, 10.0.0.7"]), ip("203.0.113.9"));
        assert_eq!(proxies.client(ip("127.0.0.1"), &["6.6.6.6", "203.0.113.9"]), ip("203.0.113.9"));
        // Garbage stops the walk at the last good hop.
        assert_eq!(proxies.client(ip("127.0.0.1"), &["nonsense, 10.0.0.7"]), ip("10.0.0.7"));
        assert_eq!(proxies.client(ip("127.0.0.1"), &[]), ip("127.0.0.1"));
        assert_eq!(TrustedProxies::default().client(ip("127.0.0.1"), &["203.0.113.9"]), ip("127.0.0.1"));
    }
}
