//! Compressing the listener's larger answers (the status page of a big fleet is several
//! hundred KB of repetitive HTML, a tenth of that gzipped) for clients that accept gzip.

use std::io::Write;

/// Bodies smaller than this go as they are.
const MIN_SIZE: usize = 1024;

/// Whether the request head's `Accept-Encoding` accepts gzip (`gzip;q=0` refuses it).
pub fn accepted(head: &str) -> bool {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(name, _)| name.trim().eq_ignore_ascii_case("accept-encoding"))
        .flat_map(|(_, value)| value.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let refused = parts.any(|p| p.strip_prefix("q=").is_some_and(|q| q.parse::<f32>().is_ok_and(|q| q <= 0.0)));
            name.eq_ignore_ascii_case("gzip") && !refused
        })
}

/// `body` gzipped, when it is worth it and the encoder did not fail.
pub fn compress(body: &str) -> Option<Vec<u8>> {
    if body.len() < MIN_SIZE {
        return None;
    }
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(body.as_bytes()).ok()?;
    encoder.finish().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn gzip_is_used_only_when_accepted() {
        assert!(accepted("GET / HTTP/1.1\r\nAccept-Encoding: gzip, deflate, br\r\n"));
        assert!(accepted("GET / HTTP/1.1\r\naccept-encoding:br;q=1.0, GZIP;q=0.5\r\n"));
        assert!(!accepted("GET / HTTP/1.1\r\nAccept-Encoding: gzip;q=0\r\n"));
        assert!(!accepted("GET / HTTP/1.1\r\nAccept-Encoding: br, x-gzip-not\r\n"));
        assert!(!accepted("GET / HTTP/1.1\r\nX-Accept-Encoding-Note: gzip\r\n"));
        assert!(!accepted("GET / HTTP/1.1\r\n"));
    }

    #[test]
    fn compressed_bodies_decode_to_the_original() {
        assert_eq!(compress("small"), None);
        let body = "<tr><td>row</td></tr>".repeat(500);
        let gz = compress(&body).unwrap();
        assert!(gz.len() < body.len() / 10, "{} of {}", gz.len(), body.len());
        let mut back = String::new();
        flate2::read::GzDecoder::new(&gz[..]).read_to_string(&mut back).unwrap();
        assert_eq!(back, body);
    }
}
