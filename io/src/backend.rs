//! Which I/O backend a runtime uses: io_uring when the kernel lets us have it, epoll otherwise.
//!
//! io_uring is often unavailable where a sidecar runs: the `kernel.io_uring_disabled` sysctl
//! (2 = off for everyone, 1 = only for a privileged group), seccomp profiles such as Docker's
//! default that answer `io_uring_setup` with EPERM or ENOSYS, and kernels too old for the
//! operations the driver submits. The only reliable test is to try: [`probe_io_uring`] sets up
//! a small ring and asks it (IORING_REGISTER_PROBE) for every opcode and feature the driver
//! relies on. [`select`] turns the user's choice and the probe's verdict into the backend to
//! run and a reason, which the runtime logs once.

use std::fmt;
use std::io;
use std::str::FromStr;

use io_uring::{opcode, IoUring, Probe};

/// The user's choice (`--backend`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendChoice {
    /// io_uring if it works here, else epoll.
    #[default]
    Auto,
    /// io_uring or fail.
    IoUring,
    /// epoll (the mio driver).
    Epoll,
}

impl FromStr for BackendChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(BackendChoice::Auto),
            "io-uring" | "io_uring" | "uring" => Ok(BackendChoice::IoUring),
            "epoll" => Ok(BackendChoice::Epoll),
            other => Err(format!(
                "unknown backend {other:?} (expected auto, io-uring or epoll)"
            )),
        }
    }
}

impl fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendChoice::Auto => "auto",
            BackendChoice::IoUring => "io-uring",
            BackendChoice::Epoll => "epoll",
        })
    }
}

/// The backend that actually runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    IoUring,
    Epoll,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::IoUring => "io-uring",
            Backend::Epoll => "epoll",
        })
    }
}

/// Why io_uring cannot be used here.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    /// `kernel.io_uring_disabled` is 2.
    #[error("io_uring is disabled by the kernel.io_uring_disabled sysctl")]
    DisabledBySysctl,
    /// `io_uring_setup` failed (EPERM/ENOSYS under seccomp, ENOMEM under a low memlock limit).
    #[error("io_uring_setup failed: {0}")]
    Setup(#[source] io::Error),
    /// The ring works but lacks something the driver needs.
    #[error("io_uring lacks {0}")]
    Missing(&'static str),
}

/// A selected backend and the sentence the runtime logs about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    pub backend: Backend,
    pub reason: String,
}

/// The user asked for io_uring and it is not available.
#[derive(Debug, thiserror::Error)]
#[error("--backend io-uring was requested, but {0}")]
pub struct ForcedUnavailable(#[source] pub Unavailable);

/// Try io_uring for real: read the sysctl, set up a ring, check the opcodes and features used.
pub fn probe_io_uring() -> Result<(), Unavailable> {
    if let Ok(text) = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled") {
        if text.trim() == "2" {
            return Err(Unavailable::DisabledBySysctl);
        }
    }
    let ring = IoUring::new(8).map_err(Unavailable::Setup)?;
    if !ring.params().is_feature_ext_arg() {
        // Waiting with a timeout (IORING_ENTER_EXT_ARG) needs Linux 5.11.
        return Err(Unavailable::Missing("IORING_FEAT_EXT_ARG (Linux 5.11+)"));
    }
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(Unavailable::Setup)?;
    let needed = [
        (opcode::Accept::CODE, "IORING_OP_ACCEPT"),
        (opcode::Connect::CODE, "IORING_OP_CONNECT"),
        (opcode::Recv::CODE, "IORING_OP_RECV"),
        (opcode::Writev::CODE, "IORING_OP_WRITEV"),
        (opcode::Read::CODE, "IORING_OP_READ"),
        (opcode::AsyncCancel::CODE, "IORING_OP_ASYNC_CANCEL"),
    ];
    for (code, name) in needed {
        if !probe.is_supported(code) {
            return Err(Unavailable::Missing(name));
        }
    }
    Ok(())
}

/// Decide the backend from the user's choice and a probe (injected, so tests can play an
/// unavailable io_uring). The probe is not run when epoll is forced.
pub fn select(
    choice: BackendChoice,
    probe: impl FnOnce() -> Result<(), Unavailable>,
) -> Result<Selection, ForcedUnavailable> {
    match choice {
        BackendChoice::Epoll => Ok(Selection {
            backend: Backend::Epoll,
            reason: "epoll forced by --backend epoll".into(),
        }),
        BackendChoice::IoUring => match probe() {
            Ok(()) => Ok(Selection {
                backend: Backend::IoUring,
                reason: "io_uring forced by --backend io-uring".into(),
            }),
            Err(e) => Err(ForcedUnavailable(e)),
        },
        BackendChoice::Auto => Ok(match probe() {
            Ok(()) => Selection {
                backend: Backend::IoUring,
                reason: "io_uring is available".into(),
            },
            Err(e) => Selection {
                backend: Backend::Epoll,
                reason: format!("falling back to epoll: {e}"),
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seccomp() -> Result<(), Unavailable> {
        Err(Unavailable::Setup(io::Error::from_raw_os_error(
            libc::EPERM,
        )))
    }

    #[test]
    fn auto_falls_back_to_epoll_with_the_reason() {
        let s = select(BackendChoice::Auto, seccomp).unwrap();
        assert_eq!(s.backend, Backend::Epoll);
        assert!(s.reason.contains("falling back to epoll"), "{}", s.reason);
        assert!(s.reason.contains("io_uring_setup failed"), "{}", s.reason);
        let s = select(BackendChoice::Auto, || Err(Unavailable::DisabledBySysctl)).unwrap();
        assert_eq!(s.backend, Backend::Epoll);
        assert!(s.reason.contains("io_uring_disabled"));
    }

    #[test]
    fn auto_takes_io_uring_when_the_probe_passes() {
        let s = select(BackendChoice::Auto, || Ok(())).unwrap();
        assert_eq!(s.backend, Backend::IoUring);
    }

    #[test]
    fn forced_io_uring_fails_loudly_and_forced_epoll_does_not_probe() {
        let err = select(BackendChoice::IoUring, seccomp).unwrap_err();
        assert!(err.to_string().contains("--backend io-uring"));
        let s = select(BackendChoice::Epoll, || panic!("probed")).unwrap();
        assert_eq!(s.backend, Backend::Epoll);
    }

    #[test]
    fn choices_parse_and_print() {
        for c in [
            BackendChoice::Auto,
            BackendChoice::IoUring,
            BackendChoice::Epoll,
        ] {
            assert_eq!(c.to_string().parse::<BackendChoice>(), Ok(c));
        }
        assert!("kqueue".parse::<BackendChoice>().is_err());
    }
}
