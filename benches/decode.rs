//! Decoding throughput: our decoder (the one every restore and verification reads through)
//! against `gzip -dc`, `pigz -dc` and `zstd -dc` on the same file, interleaved rounds, best
//! of each. Decides whether the decoder is a restore's bottleneck (issue: restore speed).
//!
//!   BENCH_INPUT=/path/backup.sql.gz cargo bench --bench decode     (or a .sql.zst)

use std::io::{self, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use backup_container::stream::compress;
use backup_container::stream::crypt::Keys;

/// Reads `r` to the end; the bytes read.
fn drain(mut r: impl Read) -> io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0;
    loop {
        match r.read(&mut buf)? {
            0 => return Ok(n),
            k => n += k as u64,
        }
    }
}

fn ours(path: &Path) -> (f64, u64) {
    let start = Instant::now();
    let file = std::fs::File::open(path).unwrap();
    let bytes = drain(compress::decoder(path, file, &Keys::default()).unwrap()).unwrap();
    (start.elapsed().as_secs_f64(), bytes)
}

fn tool(program: &str, path: &Path) -> Option<f64> {
    let start = Instant::now();
    let status = Command::new(program).arg("-dc").arg(path).stdout(Stdio::null()).status().ok()?;
    status.success().then(|| start.elapsed().as_secs_f64())
}

fn main() {
    let Ok(input) = std::env::var("BENCH_INPUT") else {
        eprintln!("set BENCH_INPUT to a .sql.gz or .sql.zst backup");
        return;
    };
    let path = Path::new(&input);
    let tools: &[&str] = if input.ends_with(".zst") { &["zstd"] } else { &["gzip", "pigz"] };
    let mut best: Vec<(String, f64)> = vec![("backup-container decoder".into(), f64::MAX)];
    best.extend(tools.iter().map(|t| (format!("{t} -dc"), f64::MAX)));
    let mut out = 0;
    for _round in 0..3 {
        let (s, n) = ours(path);
        out = n;
        best[0].1 = best[0].1.min(s);
        for (i, t) in tools.iter().enumerate() {
            if let Some(s) = tool(t, path) {
                best[i + 1].1 = best[i + 1].1.min(s);
            }
        }
    }
    let mb = out as f64 / 1e6;
    println!("input: {input}, {mb:.1} MB decoded, best of 3 interleaved rounds\n");
    println!("| decoder | wall s | MB/s (decoded) |");
    println!("|---|---|---|");
    for (name, s) in best.iter().filter(|(_, s)| *s < f64::MAX) {
        println!("| {name} | {s:.2} | {:.0} |", mb / s);
    }
}
