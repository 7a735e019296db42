//! The throwaway cluster starts, makes databases, survives a kill and restart, and goes.

use testbay_pgtest::Cluster;

fn psql(c: &Cluster, url: &str, sql: &str) -> String {
    let out = std::process::Command::new(testbay_pgtest::bin_dir().unwrap().join("psql"))
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", url, "-c", sql])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "port {}: {}",
        c.port(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn a_cluster_starts_makes_databases_restarts_and_is_removed() {
    let c = Cluster::start().unwrap();
    let a = c.fresh_db("alpha").unwrap();
    let b = c.fresh_db("alpha").unwrap();
    assert_ne!(a, b);
    psql(&c, &a, "CREATE TABLE t (x int); INSERT INTO t VALUES (41)");
    assert_eq!(psql(&c, &a, "SELECT x + 1 FROM t"), "42");
    assert_eq!(
        psql(&c, &a, "SELECT current_user"),
        testbay_pgtest::SUPERUSER
    );
    c.kill();
    c.restart().unwrap();
    assert_eq!(psql(&c, &a, "SELECT count(*) FROM t"), "1");
    let port = c.port();
    drop(c);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the server is gone"
    );
}
