//! Where a rack agent belongs among the servers of one lab database: with the server
//! that owns the reservation book, since that one launches and executes the runs (a
//! launch on another server is forwarded to it). A server that does not own the book
//! answers an agent's hello with a redirect to the owner's address, as the owner
//! recorded it in `lab_servers` (`Store::book_home`); the agent connects there. When
//! the owner dies the agents' connections drop, they try their servers again and are
//! sent to whichever took the book over. On the single seat (SQLite) nothing changes.

use crate::store::{BookHome, Store};

/// What a server tells an agent that says hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentHome {
    /// Stay: this server owns the book (or is the only one).
    Here,
    /// Connect to the book's owner at this address instead.
    Redirect(String),
    /// Nobody can take it now (why): try again later, or another server.
    NotYet(String),
}

/// Where an agent belongs, as a server that owns the book (`owns_book`) or not sees it
/// on `store`.
pub fn agent_home(store: &dyn Store, owns_book: bool) -> AgentHome {
    if owns_book {
        return AgentHome::Here;
    }
    match store.book_home() {
        Ok(BookHome::Alone) => AgentHome::Here,
        // The book's row still names this server, which no longer owns it (it gave the
        // book up and dropped its agents): keeping the agent here would strand it.
        Ok(BookHome::Here) => AgentHome::NotYet(
            "this server no longer owns the reservation book (another is taking it over)".into(),
        ),
        Ok(BookHome::At(address)) => AgentHome::Redirect(address),
        Ok(BookHome::Unknown) => AgentHome::NotYet(
            "no server owns the reservation book now (its owner stopped answering and none took it over yet)".into(),
        ),
        Err(e) => AgentHome::NotYet(format!("cannot tell which server owns the reservation book: {e}")),
    }
}
