//! The lab book's tables, as migration steps. Every step is idempotent (`IF NOT EXISTS`,
//! `CREATE OR REPLACE`), so [`super::LabBook::open`] applies them all under an advisory
//! lock on every open; once the PostgreSQL store's versioned migrations exist these steps
//! are appended to them.
//!
//! Times are `timestamptz` in the database and epoch milliseconds in Rust
//! (`testbay_ts` / `testbay_ms` convert). A reservation is *active* while its `state` is
//! `booked` or `held`: that is what the exclusion constraint sees, since a constraint's
//! predicate cannot read the clock. It is *live* while it is active and its deadline (a
//! pre-reservation's `claim_by`, a claim's `lease_until`, else its window's end) is later
//! than the database's `now()`: the view `lab_live`. A lapsed row stops being live at its
//! deadline with nobody writing anything; the next writer on its resource ends it
//! (`state = 'expired'`) in the same transaction before it books, so it never blocks.

/// The migration steps, in order.
pub const SCHEMA: &[&str] = &[
    // 1. The extension the exclusion constraint needs (`text` with `=` in a GiST index).
    "CREATE EXTENSION IF NOT EXISTS btree_gist",
    // 2. Time conversions: epoch milliseconds <-> timestamptz.
    "CREATE OR REPLACE FUNCTION testbay_ts(ms bigint) RETURNS timestamptz
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
        AS $$ SELECT to_timestamp(ms / 1000.0) $$;
     CREATE OR REPLACE FUNCTION testbay_ms(t timestamptz) RETURNS bigint
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
        AS $$ SELECT floor(extract(epoch FROM t) * 1000)::bigint $$",
    // 3. Resources: every DUT is an exclusive resource of capacity 1.
    "CREATE TABLE IF NOT EXISTS lab_resources (
        name text PRIMARY KEY,
        kind text NOT NULL CHECK (kind IN ('exclusive', 'shared')),
        capacity integer NOT NULL CHECK (capacity > 0),
        CHECK (kind = 'shared' OR capacity = 1)
     )",
    // 4. Reservations, live and ended. `exclusive` copies the resource's kind (a
    //    constraint's predicate reads only its own row). `changed_by` and `change` say who
    //    made the last change and what it was, for the notification.
    "CREATE TABLE IF NOT EXISTS lab_reservations (
        id bigserial PRIMARY KEY,
        resource text NOT NULL REFERENCES lab_resources (name),
        exclusive boolean NOT NULL,
        mode text NOT NULL CHECK (mode IN ('exclusive', 'shared')),
        units integer NOT NULL CHECK (units > 0),
        holder_kind text NOT NULL CHECK (holder_kind IN ('run', 'operator')),
        run_id text,
        lane text,
        task text,
        operator text,
        CHECK ((holder_kind = 'run') = (run_id IS NOT NULL AND lane IS NOT NULL)),
        CHECK ((holder_kind = 'operator') = (operator IS NOT NULL)),
        server text NOT NULL,
        user_name text,
        needed_at timestamptz NOT NULL,
        during tstzrange NOT NULL CHECK (NOT isempty(during) AND NOT lower_inf(during) AND NOT upper_inf(during)),
        state text NOT NULL CHECK (state IN ('booked', 'held', 'released', 'expired', 'rebooked')),
        claim_by timestamptz,
        CHECK (state <> 'booked' OR claim_by IS NOT NULL),
        lease_ms bigint CHECK (lease_ms > 0),
        lease_until timestamptz,
        claimed_at timestamptz,
        created_at timestamptz NOT NULL DEFAULT now(),
        ended_at timestamptz,
        end_reason text,
        CHECK ((state IN ('booked', 'held')) = (ended_at IS NULL)),
        change text NOT NULL,
        changed_by text NOT NULL,
        CONSTRAINT lab_no_double_booking EXCLUDE USING gist (resource WITH =, during WITH &&)
            WHERE (exclusive AND state IN ('booked', 'held'))
     )",
    "CREATE INDEX IF NOT EXISTS lab_reservations_active
        ON lab_reservations (resource, lower(during)) WHERE state IN ('booked', 'held')",
    "CREATE INDEX IF NOT EXISTS lab_reservations_ended
        ON lab_reservations (ended_at DESC) WHERE ended_at IS NOT NULL",
    // 5. Liveness by the database's clock.
    "CREATE OR REPLACE FUNCTION lab_deadline(state text, claim_by timestamptz,
            lease_until timestamptz, during tstzrange) RETURNS timestamptz
        LANGUAGE sql IMMUTABLE PARALLEL SAFE
        AS $$ SELECT CASE state WHEN 'booked' THEN claim_by
                                WHEN 'held' THEN coalesce(lease_until, upper(during)) END $$",
    "CREATE OR REPLACE VIEW lab_live AS
        SELECT * FROM lab_reservations
        WHERE state IN ('booked', 'held')
          AND lab_deadline(state, claim_by, lease_until, during) > now()",
    // 6. The run queue several servers take from.
    "CREATE TABLE IF NOT EXISTS lab_queue (
        id bigserial PRIMARY KEY,
        run_id text NOT NULL UNIQUE,
        rank smallint NOT NULL,
        payload text NOT NULL,
        state text NOT NULL CHECK (state IN ('queued', 'started', 'cancelled')),
        enqueued_at timestamptz NOT NULL DEFAULT now(),
        enqueued_by text NOT NULL,
        claimed_by text,
        claimed_at timestamptz,
        change text NOT NULL,
        changed_by text NOT NULL
     )",
    "CREATE INDEX IF NOT EXISTS lab_queue_waiting
        ON lab_queue (rank DESC, id) WHERE state = 'queued'",
    // 7. Every change is told on channel `testbay_book` (delivered at commit).
    "CREATE OR REPLACE FUNCTION lab_notify() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
        IF TG_TABLE_NAME = 'lab_reservations' THEN
            PERFORM pg_notify('testbay_book', json_build_object(
                'table', 'reservation', 'id', NEW.id, 'resource', NEW.resource,
                'change', NEW.change, 'state', NEW.state, 'by', NEW.changed_by)::text);
        ELSE
            PERFORM pg_notify('testbay_book', json_build_object(
                'table', 'queue', 'id', NEW.id, 'run_id', NEW.run_id,
                'change', NEW.change, 'state', NEW.state, 'by', NEW.changed_by)::text);
        END IF;
        RETURN NULL;
     END $$",
    "CREATE OR REPLACE TRIGGER lab_reservations_notify
        AFTER INSERT OR UPDATE ON lab_reservations
        FOR EACH ROW EXECUTE FUNCTION lab_notify()",
    "CREATE OR REPLACE TRIGGER lab_queue_notify
        AFTER INSERT OR UPDATE ON lab_queue
        FOR EACH ROW EXECUTE FUNCTION lab_notify()",
];
