//! Each run's text digest, for the listing's text search: the run's task names and
//! messages, one document per run in a trigram index (`run_text`, FTS5, contentless;
//! `runs.text_doc` is the run's document).
//!
//! The digest only passes runs over: the search still checks a run's task rows with
//! `LIKE`, so it finds exactly what it did, but only in the runs whose digest holds the
//! text (a trigram phrase matches every substring `LIKE` matches, case folded at least as
//! far), instead of reading every task row of every run. A run without a digest
//! (`text_doc` NULL) is checked row by row as before.
//!
//! Who keeps it: a run's insert and every batch (`finish_tasks`) write the digest of the
//! runs they touch, once per run; a single write that changes a task name or message
//! (a task's finish, recovery) drops its run's digest (triggers, paused by a batch as the
//! tally triggers are), and the digest is written again when the run finishes.

use rusqlite::{params, Connection, OptionalExtension};

use crate::store::Result;

/// The digest of run `?1`: its distinct task names and messages, one per line.
const DIGEST: &str = "SELECT coalesce(group_concat(x, char(10)), '') FROM (
        SELECT t.task AS x FROM task_results t WHERE t.run_id = ?1
        UNION SELECT t.message FROM task_results t WHERE t.run_id = ?1 AND t.message <> '')";

/// Write the digest of each of `run_ids` again, inside the caller's transaction.
pub(super) fn refresh<'a>(
    conn: &Connection,
    run_ids: impl IntoIterator<Item = &'a str>,
) -> Result<()> {
    let mut doc_of = conn.prepare_cached("SELECT text_doc FROM runs WHERE id = ?1")?;
    let mut drop_doc = conn.prepare_cached("DELETE FROM run_text WHERE rowid = ?1")?;
    let mut digest = conn.prepare_cached(DIGEST)?;
    let mut add = conn.prepare_cached("INSERT INTO run_text (body) VALUES (?1)")?;
    let mut set = conn.prepare_cached("UPDATE runs SET text_doc = ?2 WHERE id = ?1")?;
    for id in run_ids {
        let Some(old) = doc_of
            .query_row([id], |r| r.get::<_, Option<i64>>(0))
            .optional()?
        else {
            continue;
        };
        if let Some(doc) = old {
            drop_doc.execute([doc])?;
        }
        let body: String = digest.query_row([id], |r| r.get(0))?;
        add.execute([body])?;
        set.execute(params![id, conn.last_insert_rowid()])?;
    }
    Ok(())
}

/// Write the digest of `run_id` if a single write dropped it.
pub(super) fn refresh_if_dropped(conn: &Connection, run_id: &str) -> Result<()> {
    let dropped = conn
        .prepare_cached("SELECT text_doc IS NULL FROM runs WHERE id = ?1")?
        .query_row([run_id], |r| r.get::<_, bool>(0))
        .optional()?
        .unwrap_or(false);
    if dropped {
        refresh(conn, [run_id])?;
    }
    Ok(())
}

/// The trigram phrase that every text holding `text` (in any case) matches, for
/// `run_text MATCH`; `None` for a text under three characters, which has no trigram.
pub(super) fn phrase(text: &str) -> Option<String> {
    (text.chars().count() >= 3).then(|| format!("\"{}\"", text.replace('"', "\"\"")))
}

#[cfg(test)]
mod tests {
    use super::phrase;

    #[test]
    fn a_phrase_quotes_the_text_and_needs_three_characters() {
        assert_eq!(phrase("ab"), None);
        assert_eq!(phrase("a\"b c").as_deref(), Some("\"a\"\"b c\""));
    }
}
