//! Multiaddrs of the HTTP listeners, as Kubo writes them in `Addresses.API` and `Addresses.Gateway`.

use std::net::{IpAddr, SocketAddr};

use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;

/// Turns `/ip4/A/tcp/P` or `/ip6/A/tcp/P` into a socket address.
pub fn multiaddr_to_socket(addr: &str) -> Result<SocketAddr, String> {
    let ma: Multiaddr = addr
        .parse()
        .map_err(|e| format!("`{addr}` is not a multiaddr: {e}"))?;
    let mut ip: Option<IpAddr> = None;
    let mut port: Option<u16> = None;
    for p in ma.iter() {
        match p {
            Protocol::Ip4(a) => ip = Some(a.into()),
            Protocol::Ip6(a) => ip = Some(a.into()),
            Protocol::Dns(h) | Protocol::Dns4(h) | Protocol::Dns6(h) if h == "localhost" => {
                ip = Some(IpAddr::from([127, 0, 0, 1]))
            }
            Protocol::Tcp(p) => port = Some(p),
            Protocol::Http => {}
            other => {
                return Err(format!(
                    "`{addr}`: {other} is not supported here; use /ip4/HOST/tcp/PORT"
                ));
            }
        }
    }
    match (ip, port) {
        (Some(ip), Some(port)) => Ok(SocketAddr::new(ip, port)),
        _ => Err(format!(
            "`{addr}` needs an IP and a TCP port, such as /ip4/127.0.0.1/tcp/5001"
        )),
    }
}

/// The multiaddr of a bound socket.
pub fn socket_to_multiaddr(addr: SocketAddr) -> Multiaddr {
    let ip = match addr.ip() {
        IpAddr::V4(a) => Protocol::Ip4(a),
        IpAddr::V6(a) => Protocol::Ip6(a),
    };
    Multiaddr::empty().with(ip).with(Protocol::Tcp(addr.port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let s = multiaddr_to_socket("/ip4/127.0.0.1/tcp/5001").unwrap();
        assert_eq!(s, "127.0.0.1:5001".parse().unwrap());
        assert_eq!(
            socket_to_multiaddr(s).to_string(),
            "/ip4/127.0.0.1/tcp/5001"
        );
        assert!(multiaddr_to_socket("/ip4/127.0.0.1/udp/1/quic-v1").is_err());
        assert!(multiaddr_to_socket("/ip4/127.0.0.1").is_err());
        assert!(multiaddr_to_socket("garbage").is_err());
    }
}
