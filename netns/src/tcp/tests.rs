//! The repair of a live loopback connection, in-process: one end is read in repair
//! mode, closed silently, built again in a new socket, and the two ends go on talking
//! with every byte delivered once. Needs CAP_NET_ADMIN (root).

use super::*;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::time::Duration;

fn pair() -> (TcpListener, TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    for x in [&c, &s] {
        x.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    }
    (l, c, s)
}

fn pattern(at: usize) -> u8 {
    (at % 251) as u8
}

/// Writes the pattern without blocking until the kernel takes no more; returns the count.
fn fill(s: &mut TcpStream) -> usize {
    s.set_nonblocking(true).unwrap();
    let chunk: Vec<u8> = (0..65536).map(pattern).collect();
    let mut total = 0;
    loop {
        let from = total % 251;
        match s.write(&chunk[from..from + 60000]) {
            Ok(n) => total += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("write: {e}"),
        }
    }
    s.set_nonblocking(false).unwrap();
    total
}

fn read_exact(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf).unwrap();
    buf
}

/// Each side sends N and expects N+1 back, `rounds` times.
fn counter_rounds(a: &mut TcpStream, b: &mut TcpStream, start: u64, rounds: u64) {
    for n in start..start + rounds {
        a.write_all(&n.to_le_bytes()).unwrap();
        let got = u64::from_le_bytes(read_exact(b, 8).try_into().unwrap());
        assert_eq!(got, n);
        b.write_all(&(got + 1).to_le_bytes()).unwrap();
        let back = u64::from_le_bytes(read_exact(a, 8).try_into().unwrap());
        assert_eq!(back, n + 1);
    }
}

/// Reads `total` pattern bytes from `s`, checking each one.
fn expect_pattern(s: &mut TcpStream, total: usize) {
    let mut got = 0;
    let mut buf = vec![0u8; 1 << 16];
    while got < total {
        let n = s.read(&mut buf[..(total - got).min(1 << 16)]).unwrap();
        assert!(n > 0, "the stream ended after {got} of {total} bytes");
        for (i, b) in buf[..n].iter().enumerate() {
            assert_eq!(*b, pattern(got + i), "byte {} differs", got + i);
        }
        got += n;
    }
}

fn repair_and_rebuild(s: TcpStream) -> (TcpConnection, TcpStream) {
    repair_on(s.as_fd()).unwrap();
    let conn = TcpConnection::read(s.as_fd()).unwrap();
    // Closed in repair mode: no FIN, no RST reaches the peer.
    drop(s);
    let fd = conn.restore().unwrap();
    repair_off(fd.as_fd()).unwrap();
    let s = TcpStream::from(fd);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    (conn, s)
}

#[test]
fn a_client_rebuilt_from_its_repair_state_keeps_both_queues_and_talks_on() {
    let (_l, mut client, mut server) = pair();
    counter_rounds(&mut client, &mut server, 1, 3);
    server.write_all(b"for the client").unwrap();
    client.write_all(b"for the server").unwrap();
    // The server reads nothing more: its window fills and the rest stays unsent.
    let written = fill(&mut client);
    std::thread::sleep(Duration::from_millis(50));

    let (conn, mut client) = repair_and_rebuild(client);
    assert_eq!(conn.inq, b"for the client");
    assert!(conn.unsent > 0, "the window should have held data back");
    assert_eq!(
        conn.opt_mask,
        stasis_sys::tcp::TCPI_OPT_TIMESTAMPS
            | stasis_sys::tcp::TCPI_OPT_SACK
            | stasis_sys::tcp::TCPI_OPT_WSCALE,
        "loopback negotiates timestamps, SACK and window scaling"
    );
    assert!(conn.window.is_some());
    assert_eq!(conn.local, Some(client.local_addr().unwrap()));

    assert_eq!(read_exact(&mut client, 14), b"for the client");
    assert_eq!(read_exact(&mut server, 14), b"for the server");
    expect_pattern(&mut server, written);
    counter_rounds(&mut client, &mut server, 100, 50);
    counter_rounds(&mut server, &mut client, 1000, 50);
}

#[test]
fn an_accepted_end_is_rebuilt_on_the_port_its_listener_still_holds() {
    let (listener, mut client, server) = pair();
    counter_rounds(&mut client, &mut server.try_clone().unwrap(), 1, 2);
    client.write_all(b"queued while frozen").unwrap();
    std::thread::sleep(Duration::from_millis(20));

    let (conn, mut server) = repair_and_rebuild(server);
    assert_eq!(
        conn.local.unwrap().port(),
        listener.local_addr().unwrap().port()
    );
    assert_eq!(conn.inq, b"queued while frozen");
    assert_eq!(read_exact(&mut server, 19), b"queued while frozen");
    counter_rounds(&mut client, &mut server, 7, 50);
    // The listener still accepts new connections beside the rebuilt one.
    let _other = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    listener.accept().unwrap();
}

#[test]
fn a_listening_socket_is_refused_by_name() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    repair_on(l.as_fd()).unwrap_or(());
    let e = TcpConnection::read(l.as_fd()).unwrap_err();
    assert!(e.to_string().contains("LISTEN"), "{e}");
}

#[test]
fn options_survive_being_read_and_applied() {
    let (_l, c, _s) = pair();
    let want = TcpOptions {
        nodelay: true,
        cork: false,
        keepcnt: 4,
        keepidle: 77,
        keepintvl: 9,
    };
    want.apply(c.as_fd()).unwrap();
    assert_eq!(TcpOptions::read(c.as_fd()).unwrap(), want);
}
