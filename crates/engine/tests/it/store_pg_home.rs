//! Where the book is owned among the servers of one PostgreSQL database, as a rack
//! agent's hello needs it (`Store::book_home`): the owner's address, recorded by
//! `set_server_address`, for the others; nobody's once the owner gave the book up or its
//! server went; the single seat (SQLite) alone.

use testbay_engine::store::*;

fn fresh_db(prefix: &str) -> String {
    testbay_pgtest::shared()
        .expect("a throwaway PostgreSQL (Debian's postgresql package)")
        .fresh_db(prefix)
        .unwrap()
}

#[test]
fn the_other_servers_know_the_books_owners_address() {
    let url = fresh_db("bookhome");
    let a = PgStore::open(&url).unwrap();
    let b = PgStore::open(&url).unwrap();
    a.set_server_address("http://10.0.0.1:7780").unwrap();
    b.set_server_address("http://10.0.0.2:7780").unwrap();
    assert_eq!(b.book_home().unwrap(), BookHome::Unknown, "nobody owns it");

    let lock = a.lock_book("server a").unwrap().expect("free");
    assert_eq!(a.book_home().unwrap(), BookHome::Here);
    assert_eq!(
        b.book_home().unwrap(),
        BookHome::At("http://10.0.0.1:7780".into())
    );

    // Given up: nobody's until another takes it.
    drop(lock);
    let started = std::time::Instant::now();
    let lock = loop {
        if let Some(l) = b.lock_book("server b").unwrap() {
            break l;
        }
        assert!(started.elapsed().as_secs() < 10, "never released");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(
        a.book_home().unwrap(),
        BookHome::At("http://10.0.0.2:7780".into())
    );
    // Its server gone (its lease ended with its store): nobody's.
    drop(b);
    assert_eq!(a.book_home().unwrap(), BookHome::Unknown);
    drop(lock);
}

#[test]
fn the_single_seat_is_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = StoreLocation::default_in(dir.path()).open().unwrap();
    store.set_server_address("http://127.0.0.1:7780").unwrap();
    assert_eq!(store.book_home().unwrap(), BookHome::Alone);
}

/// A server whose `book_owner` row still names it but that no longer owns the book (its
/// console gave it up) keeps no agent: it says "not yet", so the agent tries elsewhere.
#[test]
fn a_server_no_longer_owning_the_book_keeps_no_agent() {
    use testbay_engine::agents::{agent_home, AgentHome};
    let url = fresh_db("bookhomestale");
    let a = PgStore::open(&url).unwrap();
    a.set_server_address("http://10.0.0.1:7780").unwrap();
    let lock = a.lock_book("server a").unwrap().expect("free");
    assert_eq!(a.book_home().unwrap(), BookHome::Here);
    assert_eq!(agent_home(&a, true), AgentHome::Here);
    assert!(
        matches!(agent_home(&a, false), AgentHome::NotYet(_)),
        "{:?}",
        agent_home(&a, false)
    );
    drop(lock);
}
