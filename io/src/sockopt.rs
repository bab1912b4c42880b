//! The few socket and thread options the runtimes need that `std` and `socket2` do not offer:
//! the original destination of a redirected connection, and pinning a thread to a CPU.
//!
//! SO_ORIGINAL_DST is how a sidecar learns where a client meant to go when iptables (Istio's
//! `istio-iptables` REDIRECT rules) sent the connection to the outbound listener instead: the
//! kernel's conntrack entry remembers the pre-NAT destination. A connection that was not
//! redirected either has no such entry (ENOENT) or reports the listener's own address; both
//! mean "no original destination", and the engine then routes by the request alone.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// `SO_ORIGINAL_DST` (linux/netfilter_ipv4.h), at level `SOL_IP`.
const SO_ORIGINAL_DST: libc::c_int = 80;
/// `IP6T_SO_ORIGINAL_DST` (linux/netfilter_ipv6/ip6_tables.h), at level `SOL_IPV6`.
const IP6T_SO_ORIGINAL_DST: libc::c_int = 80;

/// The pre-NAT destination of an accepted connection, or `None` when it was not redirected
/// (no conntrack entry, or the destination is the socket's own local address).
pub fn original_dst(fd: RawFd, local: SocketAddr) -> Option<SocketAddr> {
    let found = match local {
        SocketAddr::V4(_) => original_dst_v4(fd),
        SocketAddr::V6(_) => original_dst_v6(fd),
    };
    match found {
        Ok(addr) if addr != local => Some(addr),
        Ok(_) => None,
        Err(e) => {
            // ENOENT: no NAT entry (the usual case without iptables); ENOPROTOOPT: no
            // netfilter in this kernel. Neither is worth more than a trace.
            tracing::trace!(error = %e, "no original destination");
            None
        }
    }
}

fn original_dst_v4(fd: RawFd) -> io::Result<SocketAddr> {
    // SAFETY: sockaddr_in is plain old data; zeroed is a valid value.
    let mut sa: libc::sockaddr_in = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: `sa` and `len` are valid for writes of the sizes given; `fd` is only read.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_IP,
            SO_ORIGINAL_DST,
            (&mut sa as *mut libc::sockaddr_in).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let ip = Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr));
    Ok(SocketAddr::V4(SocketAddrV4::new(
        ip,
        u16::from_be(sa.sin_port),
    )))
}

fn original_dst_v6(fd: RawFd) -> io::Result<SocketAddr> {
    // SAFETY: sockaddr_in6 is plain old data; zeroed is a valid value.
    let mut sa: libc::sockaddr_in6 = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
    // SAFETY: as above.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_IPV6,
            IP6T_SO_ORIGINAL_DST,
            (&mut sa as *mut libc::sockaddr_in6).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let ip = Ipv6Addr::from(sa.sin6_addr.s6_addr);
    Ok(SocketAddr::V6(SocketAddrV6::new(
        ip,
        u16::from_be(sa.sin6_port),
        sa.sin6_flowinfo,
        sa.sin6_scope_id,
    )))
}

/// The CPUs this process may run on (its affinity mask), in increasing order.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain old data; sched_getaffinity writes at most its size.
    let mut set: libc::cpu_set_t = unsafe { mem::zeroed() };
    let rc = unsafe { libc::sched_getaffinity(0, mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Vec::new();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}

/// Pin the calling thread to one CPU.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cpu {cpu} out of range"),
        ));
    }
    // SAFETY: cpu_set_t is plain old data; `cpu` is in range (checked above).
    let rc = unsafe {
        let mut set: libc::cpu_set_t = mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_connection_that_was_not_redirected_has_no_original_destination() {
        for bind in ["127.0.0.1:0", "[::1]:0"] {
            let Ok(listener) = std::net::TcpListener::bind(bind) else {
                continue; // no IPv6 loopback in this sandbox: the v4 case still runs
            };
            let addr = listener.local_addr().unwrap();
            let _client = std::net::TcpStream::connect(addr).unwrap();
            let (accepted, _) = listener.accept().unwrap();
            let local = accepted.local_addr().unwrap();
            assert_eq!(original_dst(accepted.as_raw_fd(), local), None);
        }
    }

    #[test]
    fn pinning_to_an_allowed_cpu_works() {
        let cpus = allowed_cpus();
        assert!(!cpus.is_empty());
        std::thread::spawn(move || pin_current_thread(cpus[cpus.len() - 1]))
            .join()
            .unwrap()
            .unwrap();
        assert!(pin_current_thread(usize::MAX).is_err());
    }
}
