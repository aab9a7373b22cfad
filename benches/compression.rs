//! Compression throughput and ratio on a real plain-SQL dump, per algorithm, level and thread
//! count, through the same encoders the backup uses. Picks the default level by measurement.
//!
//!   pg_dump ... > /tmp/dump.sql
//!   BENCH_INPUT=/tmp/dump.sql cargo bench --bench compression
//!
//! `scripts/bench.sh` prints the end-to-end comparison (with pg_dump competing for CPU).

use std::io::{self, Read, Write};
use std::time::Instant;

use backup_container::stream::compress::Compression;

/// Counts bytes and throws them away.
struct Sink(u64);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn cpu_seconds() -> f64 {
    let u = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).unwrap();
    let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
    t(u.user_time()) + t(u.system_time())
}

fn main() {
    let Ok(path) = std::env::var("BENCH_INPUT") else {
        eprintln!("set BENCH_INPUT to a plain-SQL dump file (e.g. pg_dump -Fp db > /tmp/dump.sql)");
        return;
    };
    let mut input = Vec::new();
    std::fs::File::open(&path).unwrap().read_to_end(&mut input).unwrap();
    let mb = input.len() as f64 / 1e6;
    println!(
        "input: {path}, {mb:.1} MB, {} cores\n",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    println!("| algorithm | level | threads | wall MB/s | cpu MB/s | ratio |");
    println!("|---|---|---|---|---|---|");
    let mut configs = Vec::new();
    for level in 1..=9 {
        configs.push(Compression::Gzip { level, threads: 1 });
    }
    for level in [1, 3, 4, 5, 6] {
        configs.push(Compression::Gzip { level, threads: 2 });
    }
    for level in [1, 3] {
        configs.push(Compression::Zstd { level, threads: 1 });
        configs.push(Compression::Zstd { level, threads: 2 });
    }
    for c in configs {
        let (cpu0, t0) = (cpu_seconds(), Instant::now());
        let mut enc = c.encoder(Sink(0)).unwrap();
        for chunk in input.chunks(256 * 1024) {
            enc.write_all(chunk).unwrap();
        }
        let out = enc.finish().unwrap().0;
        let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - cpu0);
        let (name, level, threads) = match c {
            Compression::Gzip { level, threads } => ("gzip", level as i64, threads),
            Compression::Zstd { level, threads } => ("zstd", level as i64, threads),
        };
        println!(
            "| {name} | {level} | {threads} | {:.1} | {:.1} | {:.2} |",
            mb / wall,
            mb / cpu,
            input.len() as f64 / out as f64
        );
    }
}
