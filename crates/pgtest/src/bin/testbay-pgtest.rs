//! `testbay-pgtest [DB]`: start a throwaway PostgreSQL cluster, create database `DB`
//! (default `testbay`), print its URL on stdout and keep it until SIGINT or SIGTERM,
//! then remove it. For `scripts/lab` and for trying a lab by hand.

use testbay_pgtest::Cluster;

fn main() {
    let db = std::env::args().nth(1).unwrap_or_else(|| "testbay".into());
    // Wait for the signals synchronously: block them before any thread starts.
    // SAFETY: plain libc calls on a local, zeroed signal set.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    let cluster = match Cluster::start() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("testbay-pgtest: {e}");
            std::process::exit(1);
        }
    };
    let url = match cluster.create_db(&db) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("testbay-pgtest: {e}");
            std::process::exit(1);
        }
    };
    println!("{url}");
    let mut sig: libc::c_int = 0;
    // SAFETY: `set` is a valid signal set; sigwait writes the signal number.
    unsafe { libc::sigwait(&set, &mut sig) };
    drop(cluster);
}
