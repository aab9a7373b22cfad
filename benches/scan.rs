//! Throughput of the dump scanners (they see every byte of every backup, restore and
//! verification), on a real dump:
//!
//!   pg_dump ... > /tmp/dump.sql
//!   BENCH_INPUT=/tmp/dump.sql [BENCH_ENGINE=mariadb] cargo bench --bench scan

use std::io::Read;
use std::time::Instant;

use backup_container::stream::scan::{Scanner, mariadb::MariaScanner, postgres::PgScanner};

fn main() {
    let Ok(path) = std::env::var("BENCH_INPUT") else {
        eprintln!("set BENCH_INPUT to a plain-SQL dump file (e.g. pg_dump -Fp db > /tmp/dump.sql)");
        return;
    };
    let mut input = Vec::new();
    std::fs::File::open(&path).unwrap().read_to_end(&mut input).unwrap();
    let mariadb = std::env::var("BENCH_ENGINE").is_ok_and(|e| e == "mariadb");
    for round in 0..3 {
        let mut scanner: Box<dyn Scanner> =
            if mariadb { Box::new(MariaScanner::new()) } else { Box::new(PgScanner::new()) };
        let started = Instant::now();
        for chunk in input.chunks(256 * 1024) {
            scanner.feed(chunk);
        }
        let summary = scanner.finish();
        let secs = started.elapsed().as_secs_f64();
        println!(
            "round {round}: {:.0} MB in {secs:.2} s = {:.0} MB/s; {summary}; {:?}",
            input.len() as f64 / 1e6,
            input.len() as f64 / 1e6 / secs,
            summary.completeness
        );
    }
}
