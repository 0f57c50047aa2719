//! The network namespace's only way out: a listener on the command's own
//! loopback ([`PROXY_PORT`](crate::spec::PROXY_PORT)), created inside the
//! namespace and handed to the helper, which connects each accepted
//! connection to kiln's allow-list proxy on the host's loopback. The
//! command can reach nothing else; what the proxy allows is kiln's policy.

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

use crate::spec::PROXY_PORT;

/// Inside the namespace: bring up loopback and, when `proxy`, listen on
/// the proxy port and send the listener over `channel`.
pub(super) fn inside(channel: &OwnedFd, proxy: bool) -> Result<(), String> {
    loopback_up()?;
    if !proxy {
        return Ok(());
    }
    let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, PROXY_PORT))
        .map_err(|e| format!("listening for the proxy inside: {e}"))?;
    let fds = [listener.as_fd()];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    control.push(SendAncillaryMessage::ScmRights(&fds));
    rustix::net::sendmsg(
        channel,
        &[IoSlice::new(b"L")],
        &mut control,
        SendFlags::empty(),
    )
    .map_err(|e| format!("handing the proxy listener over: {e}"))?;
    Ok(())
}

/// In the helper: receive the listener and relay every connection to the
/// host's `127.0.0.1:port`, on threads, until the helper exits.
pub(super) fn outside(channel: &OwnedFd, port: u16) -> Result<(), String> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8; 1];
    rustix::net::recvmsg(
        channel,
        &mut [IoSliceMut::new(&mut byte)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )
    .map_err(|e| format!("receiving the proxy listener: {e}"))?;
    let listener = control
        .drain()
        .find_map(|message| match message {
            RecvAncillaryMessage::ScmRights(mut fds) => fds.next(),
            _ => None,
        })
        .ok_or("the namespace sent no proxy listener")?;
    let listener = TcpListener::from(listener);
    std::thread::spawn(move || {
        for inner in listener.incoming().flatten() {
            std::thread::spawn(move || {
                if let Ok(outer) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) {
                    pipe(inner, outer);
                }
            });
        }
    });
    Ok(())
}

/// Copy both ways until either side closes.
fn pipe(a: TcpStream, b: TcpStream) {
    let (Ok(mut a2), Ok(mut b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let (mut a, mut b) = (a, b);
    let forward = std::thread::spawn(move || {
        let _ = std::io::copy(&mut a, &mut b2);
        let _ = b2.shutdown(std::net::Shutdown::Write);
    });
    let _ = std::io::copy(&mut b, &mut a2);
    let _ = a2.shutdown(std::net::Shutdown::Write);
    let _ = forward.join();
}

/// `ip link set lo up` inside the new network namespace.
fn loopback_up() -> Result<(), String> {
    let socket = rustix::net::socket(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::DGRAM,
        None,
    )
    .map_err(|e| format!("socket: {e}"))?;
    // SAFETY: `ifreq` is plain data; the ioctls read and write only it.
    unsafe {
        let mut request: libc::ifreq = std::mem::zeroed();
        for (dst, src) in request.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        let fd = std::os::fd::AsRawFd::as_raw_fd(&socket);
        if libc::ioctl(fd, libc::SIOCGIFFLAGS as _, &mut request) < 0 {
            return Err(format!("reading lo: {}", std::io::Error::last_os_error()));
        }
        request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(fd, libc::SIOCSIFFLAGS as _, &request) < 0 {
            return Err(format!(
                "bringing lo up: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}
