//! The SSRF guard: which IP addresses a webhook may connect to.
//!
//! Every address is first put in canonical form (an IPv4-mapped or IPv4-compatible IPv6
//! address is its IPv4 address), then the allow-list is consulted, then its class: a
//! loopback address passes only with `allow_loopback`, a private one only with
//! `allow_private`, and every other special-purpose class (link-local and cloud metadata,
//! CGNAT, unspecified, multicast, broadcast, documentation, benchmarking, reserved) only
//! through the allow-list. IPv6 forms that embed an IPv4 address for translation
//! (NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are judged by the embedded address.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Which addresses webhooks may connect to. The default refuses every special-purpose
/// address; tests switch `allow_loopback` on to reach receivers on 127.0.0.1.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkPolicy {
    /// Allow loopback addresses (127.0.0.0/8, ::1).
    pub allow_loopback: bool,
    /// Allow private addresses (10/8, 172.16/12, 192.168/16, fc00::/7, fec0::/10); the
    /// AWS IPv6 metadata address fd00:ec2::254 stays refused.
    pub allow_private: bool,
    /// Networks always allowed, whatever their class (e.g. `10.1.2.0/24` for an internal
    /// receiver).
    pub allow: Vec<IpNet>,
}

/// The special-purpose class of an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AddressClass {
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// 10/8, 172.16/12, 192.168/16, fc00::/7, fec0::/10.
    Private,
    /// 169.254/16, fe80::/10.
    LinkLocal,
    /// Cloud instance metadata: 169.254.169.254, fd00:ec2::254.
    CloudMetadata,
    /// Carrier-grade NAT, 100.64/10.
    SharedAddressSpace,
    /// 0.0.0.0/8, ::.
    Unspecified,
    /// 224/4, ff00::/8.
    Multicast,
    /// 255.255.255.255.
    Broadcast,
    /// 192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32, 3fff::/20.
    Documentation,
    /// 198.18/15, 2001:2::/48.
    Benchmarking,
    /// Everything else not globally routable: 192.0.0/24, 240/4, 100::/64, 2001::/23, …
    Reserved,
}

impl AddressClass {
    /// The class's name.
    pub fn as_str(self) -> &'static str {
        match self {
            AddressClass::Loopback => "loopback",
            AddressClass::Private => "private",
            AddressClass::LinkLocal => "link-local",
            AddressClass::CloudMetadata => "cloud metadata",
            AddressClass::SharedAddressSpace => "shared address space (CGNAT)",
            AddressClass::Unspecified => "unspecified",
            AddressClass::Multicast => "multicast",
            AddressClass::Broadcast => "broadcast",
            AddressClass::Documentation => "documentation",
            AddressClass::Benchmarking => "benchmarking",
            AddressClass::Reserved => "reserved",
        }
    }
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An address the policy refuses, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("address {address} is {class}, which the webhook network policy refuses (allow it with notify.network.allow if this receiver is trusted)")]
pub struct SsrfRefusal {
    /// The address as resolved or connected.
    pub address: IpAddr,
    /// Its class.
    pub class: AddressClass,
}

/// The canonical form of an address: IPv4-mapped (`::ffff:a.b.c.d`) and IPv4-compatible
/// (`::a.b.c.d`, except `::` and `::1`) IPv6 addresses become IPv4.
pub fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let segments = v6.segments();
            if segments[..6].iter().all(|s| *s == 0) && !v6.is_unspecified() && !v6.is_loopback() {
                return IpAddr::V4(embedded_v4(v6, 12));
            }
            address
        }
    }
}

fn embedded_v4(v6: Ipv6Addr, at: usize) -> Ipv4Addr {
    let o = v6.octets();
    Ipv4Addr::new(o[at], o[at + 1], o[at + 2], o[at + 3])
}

/// The special-purpose class of an address, `None` for a globally routable one.
pub fn classify(address: IpAddr) -> Option<AddressClass> {
    match canonical(address) {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn in_v4(address: Ipv4Addr, network: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
    (u32::from(address) & mask) == (u32::from(Ipv4Addr::from(network)) & mask)
}

fn classify_v4(a: Ipv4Addr) -> Option<AddressClass> {
    use AddressClass::*;
    let table: &[([u8; 4], u32, AddressClass)] = &[
        ([169, 254, 169, 254], 32, CloudMetadata),
        ([255, 255, 255, 255], 32, Broadcast),
        ([0, 0, 0, 0], 8, Unspecified),
        ([127, 0, 0, 0], 8, Loopback),
        ([10, 0, 0, 0], 8, Private),
        ([172, 16, 0, 0], 12, Private),
        ([192, 168, 0, 0], 16, Private),
        ([169, 254, 0, 0], 16, LinkLocal),
        ([100, 64, 0, 0], 10, SharedAddressSpace),
        ([192, 0, 2, 0], 24, Documentation),
        ([198, 51, 100, 0], 24, Documentation),
        ([203, 0, 113, 0], 24, Documentation),
        ([198, 18, 0, 0], 15, Benchmarking),
        ([192, 0, 0, 0], 24, Reserved),
        ([192, 88, 99, 0], 24, Reserved),
        ([224, 0, 0, 0], 4, Multicast),
        ([240, 0, 0, 0], 4, Reserved),
    ];
    table.iter().find(|(network, prefix, _)| in_v4(a, *network, *prefix)).map(|(_, _, class)| *class)
}

fn in_v6(address: Ipv6Addr, network: [u16; 8], prefix: u32) -> bool {
    let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - prefix) };
    (u128::from(address) & mask) == (u128::from(Ipv6Addr::from(network)) & mask)
}

fn classify_v6(a: Ipv6Addr) -> Option<AddressClass> {
    use AddressClass::*;
    // Translation prefixes carry an IPv4 address: judge it.
    if in_v6(a, [0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96) {
        return classify_v4(embedded_v4(a, 12));
    }
    if in_v6(a, [0x2002, 0, 0, 0, 0, 0, 0, 0], 16) {
        return classify_v4(embedded_v4(a, 2));
    }
    let table: &[([u16; 8], u32, AddressClass)] = &[
        ([0, 0, 0, 0, 0, 0, 0, 0], 128, Unspecified),
        ([0, 0, 0, 0, 0, 0, 0, 1], 128, Loopback),
        ([0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x254], 128, CloudMetadata),
        ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, Private),
        ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, Private),
        ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, LinkLocal),
        ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, Multicast),
        ([0x2001, 0x0db8, 0, 0, 0, 0, 0, 0], 32, Documentation),
        ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, Documentation),
        ([0x2001, 0x0002, 0, 0, 0, 0, 0, 0], 48, Benchmarking),
        ([0x2001, 0, 0, 0, 0, 0, 0, 0], 23, Reserved),
        ([0x0064, 0xff9b, 0x0001, 0, 0, 0, 0, 0], 48, Reserved),
        ([0x0100, 0, 0, 0, 0, 0, 0, 0], 64, Reserved),
        ([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16, Reserved),
        // The rest of ::/8 (IPv4-compatible forms were made IPv4 above).
        ([0, 0, 0, 0, 0, 0, 0, 0], 8, Reserved),
    ];
    table.iter().find(|(network, prefix, _)| in_v6(a, *network, *prefix)).map(|(_, _, class)| *class)
}

impl NetworkPolicy {
    /// Whether a webhook may connect to `address`; the refusal says which class it is.
    pub fn check(&self, address: IpAddr) -> Result<(), SsrfRefusal> {
        let canonical_address = canonical(address);
        if self.allow.iter().any(|net| net.contains(&canonical_address) || net.contains(&address)) {
            return Ok(());
        }
        match classify(address) {
            None => Ok(()),
            Some(AddressClass::Loopback) if self.allow_loopback => Ok(()),
            Some(AddressClass::Private) if self.allow_private => Ok(()),
            Some(class) => Err(SsrfRefusal { address, class }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(s: &str) -> Option<AddressClass> {
        classify(s.parse().unwrap())
    }

    #[test]
    fn every_special_purpose_range_is_classified() {
        use AddressClass::*;
        let cases = [
            ("127.0.0.1", Loopback),
            ("127.255.1.2", Loopback),
            ("::1", Loopback),
            ("10.1.2.3", Private),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("192.168.1.1", Private),
            ("fc00::1", Private),
            ("fd12:3456::1", Private),
            ("fec0::1", Private),
            ("169.254.1.1", LinkLocal),
            ("fe80::1", LinkLocal),
            ("febf::1", LinkLocal),
            ("169.254.169.254", CloudMetadata),
            ("fd00:ec2::254", CloudMetadata),
            ("100.64.0.1", SharedAddressSpace),
            ("100.127.255.254", SharedAddressSpace),
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", Unspecified),
            ("::", Unspecified),
            ("224.0.0.1", Multicast),
            ("239.255.255.250", Multicast),
            ("ff02::1", Multicast),
            ("255.255.255.255", Broadcast),
            ("192.0.2.1", Documentation),
            ("198.51.100.7", Documentation),
            ("203.0.113.9", Documentation),
            ("2001:db8::1", Documentation),
            ("3fff::1", Documentation),
            ("198.18.0.1", Benchmarking),
            ("198.19.255.255", Benchmarking),
            ("2001:2::1", Benchmarking),
            ("192.0.0.8", Reserved),
            ("240.0.0.1", Reserved),
            ("100::1", Reserved),
            ("2001::1", Reserved),
            ("64:ff9b:1::1", Reserved),
        ];
        for (address, expected) in cases {
            assert_eq!(class(address), Some(expected), "{address}");
        }
    }

    #[test]
    fn public_addresses_are_not_special() {
        for address in ["8.8.8.8", "1.1.1.1", "93.184.216.34", "172.15.255.255", "172.32.0.0", "100.63.255.255", "100.128.0.0", "2606:4700::1111", "2a00:1450::1"] {
            assert_eq!(class(address), None, "{address}");
        }
    }

    #[test]
    fn ipv6_forms_of_ipv4_addresses_are_judged_as_ipv4() {
        use AddressClass::*;
        let cases = [
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:7f00:1", Loopback),
            ("::127.0.0.1", Loopback),
            ("::ffff:169.254.169.254", CloudMetadata),
            ("::169.254.169.254", CloudMetadata),
            ("::ffff:10.0.0.1", Private),
            ("::ffff:0.0.0.0", Unspecified),
            ("64:ff9b::127.0.0.1", Loopback),
            ("64:ff9b::a9fe:a9fe", CloudMetadata),
            ("2002:7f00:0001::", Loopback),
            ("2002:c0a8:0101::1", Private),
        ];
        for (address, expected) in cases {
            assert_eq!(class(address), Some(expected), "{address}");
        }
        assert_eq!(class("::ffff:8.8.8.8"), None);
        assert_eq!(class("64:ff9b::8.8.8.8"), None);
        assert_eq!(class("2002:0808:0808::1"), None);
    }

    #[test]
    fn the_default_policy_refuses_and_the_switches_allow_only_their_class() {
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        let default = NetworkPolicy::default();
        assert_eq!(default.check(ip("127.0.0.1")), Err(SsrfRefusal { address: ip("127.0.0.1"), class: AddressClass::Loopback }));
        assert!(default.check(ip("::ffff:127.0.0.1")).is_err());
        assert!(default.check(ip("8.8.8.8")).is_ok());

        let loopback = NetworkPolicy { allow_loopback: true, ..NetworkPolicy::default() };
        assert!(loopback.check(ip("127.0.0.1")).is_ok());
        assert!(loopback.check(ip("::1")).is_ok());
        assert!(loopback.check(ip("::ffff:127.0.0.1")).is_ok());
        assert!(loopback.check(ip("10.0.0.1")).is_err());
        assert!(loopback.check(ip("169.254.169.254")).is_err());

        let private = NetworkPolicy { allow_private: true, ..NetworkPolicy::default() };
        assert!(private.check(ip("10.0.0.1")).is_ok());
        assert!(private.check(ip("fd12::1")).is_ok());
        assert!(private.check(ip("127.0.0.1")).is_err());
        assert_eq!(private.check(ip("fd00:ec2::254")).unwrap_err().class, AddressClass::CloudMetadata, "metadata stays refused");
        assert!(private.check(ip("169.254.169.254")).is_err());
    }

    #[test]
    fn the_allow_list_wins_for_exactly_its_networks_also_in_mapped_form() {
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        let policy = NetworkPolicy { allow: vec!["127.0.0.2/32".parse().unwrap(), "10.1.0.0/16".parse().unwrap()], ..NetworkPolicy::default() };
        assert!(policy.check(ip("127.0.0.2")).is_ok());
        assert!(policy.check(ip("::ffff:127.0.0.2")).is_ok());
        assert!(policy.check(ip("127.0.0.1")).is_err());
        assert!(policy.check(ip("10.1.200.3")).is_ok());
        assert!(policy.check(ip("10.2.0.1")).is_err());
    }

    #[test]
    fn a_refusal_names_the_address_and_class() {
        let refusal = NetworkPolicy::default().check("169.254.169.254".parse().unwrap()).unwrap_err();
        let message = refusal.to_string();
        assert!(message.contains("169.254.169.254") && message.contains("cloud metadata"), "{message}");
    }

    #[test]
    fn the_policy_reads_from_config() {
        let policy: NetworkPolicy = serde_json::from_str(r#"{"allow_loopback": true, "allow": ["127.0.0.2/32", "fd00::/8"]}"#).unwrap();
        assert!(policy.allow_loopback && !policy.allow_private);
        assert_eq!(policy.allow.len(), 2);
        assert!(serde_json::from_str::<NetworkPolicy>(r#"{"allow": ["not a net"]}"#).is_err());
    }
}
