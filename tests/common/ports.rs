//! Ports for servers a test starts.
//!
//! Not from the kernel's ephemeral range (`bind(:0)`, then release): between the release and the
//! server's own bind, any outgoing connection of a test running beside it may take that port as
//! its local port, and the server then fails with "address in use". Ports below the ephemeral
//! range (32768–60999 on Linux) are never handed to outgoing connections; each is given once per
//! test process (a counter from a random start), and only if it can be bound now (another service
//! may hold it).

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

const FIRST: u32 = 20_000;
const COUNT: u32 = 12_000;

pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(u32::MAX, rand::random::<u32>() % COUNT, Ordering::SeqCst, Ordering::SeqCst);
    for _ in 0..COUNT {
        let n = NEXT.fetch_add(1, Ordering::SeqCst) % COUNT;
        let port = u16::try_from(FIRST + n).expect("below 32000");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + COUNT)
}
