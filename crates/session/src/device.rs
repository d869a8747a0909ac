//! The client a session started on, coarse enough that an ordinary day does not change it (a
//! browser update, a new address from the same network) and fine enough that a stolen cookie
//! replayed from elsewhere does: the browser family and operating system from `User-Agent`, and
//! the network (an IPv4 /24, an IPv6 /48).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// A session's client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// Browser family and operating system, e.g. `Chrome on Linux`.
    pub agent: String,
    /// The network the client came from, e.g. `192.0.2.0/24`.
    pub network: String,
}

impl Device {
    /// The device of a request.
    pub fn of(user_agent: Option<&str>, ip: IpAddr) -> Self {
        Self {
            agent: agent(user_agent.unwrap_or_default()),
            network: network(ip),
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} from {}", self.agent, self.network)
    }
}

fn agent(ua: &str) -> String {
    // Order matters: Edge and Opera say Chrome too, Chrome says Safari.
    let browser = [
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("Firefox/", "Firefox"),
        ("Chrome/", "Chrome"),
        ("Chromium/", "Chrome"),
        ("Safari/", "Safari"),
        ("curl/", "curl"),
    ]
    .iter()
    .find(|(marker, _)| ua.contains(marker))
    .map_or("other", |(_, name)| name);
    let system = [
        ("Android", "Android"),
        ("iPhone", "iOS"),
        ("iPad", "iOS"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("CrOS", "ChromeOS"),
        ("Linux", "Linux"),
    ]
    .iter()
    .find(|(marker, _)| ua.contains(marker))
    .map_or("other", |(_, name)| name);
    format!("{browser} on {system}")
}

fn network(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => network(IpAddr::V4(v4)),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36";

    #[test]
    fn a_browser_update_or_a_neighbour_address_is_the_same_device() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let a = Device::of(Some(CHROME), ip("192.0.2.10"));
        assert_eq!(a.agent, "Chrome on Linux");
        let updated = CHROME.replace("156.0", "157.0");
        assert_eq!(a, Device::of(Some(&updated), ip("192.0.2.77")));
        assert_ne!(a, Device::of(Some(CHROME), ip("198.51.100.10")));
        assert_ne!(a, Device::of(Some("curl/8.0"), ip("192.0.2.10")));
        let edge = "Mozilla/5.0 (Windows NT 10.0) Chrome/120 Safari/537.36 Edg/120";
        assert_eq!(Device::of(Some(edge), ip("::1")).agent, "Edge on Windows");
        assert_eq!(
            Device::of(None, ip("2001:db8:1:2::9")).network,
            "2001:db8:1::/48"
        );
        assert_eq!(
            Device::of(None, ip("::ffff:192.0.2.9")).network,
            "192.0.2.0/24"
        );
    }
}
