use super::*;

/// A manifest as PostgreSQL writes one (one file per line, the checksum line last, covering
/// everything before it).
fn manifest_for(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut text = String::from("{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [\n");
    let lines: Vec<String> = files
        .iter()
        .map(|(path, body)| {
            let crc = hex(&crc32c::crc32c(body).to_le_bytes());
            format!(
                "{{ \"Path\": \"{path}\", \"Size\": {}, \"Last-Modified\": \"2026-12-05 10:00:00 GMT\", \
                 \"Checksum-Algorithm\": \"CRC32C\", \"Checksum\": \"{crc}\" }}",
                body.len()
            )
        })
        .collect();
    text.push_str(&lines.join(",\n"));
    text.push_str(
        "\n],\n\"WAL-Ranges\": [\n{ \"Timeline\": 1, \"Start-LSN\": \"0/2000028\", \"End-LSN\": \"0/2000100\" }\n],\n",
    );
    let sum = hex(&sha2::Sha256::digest(text.as_bytes()));
    text.push_str(&format!("\"Manifest-Checksum\": \"{sum}\"}}\n"));
    text.into_bytes()
}

const FILES: [(&str, &[u8]); 3] = [
    ("backup_label", b"START WAL LOCATION: 0/2000028\n"),
    ("base/1/1259", &[7u8; 9000]),
    ("global/pg_control", b"ctl"),
];

/// A tar like pg_basebackup's: the files, a directory, the manifest last, two zero blocks.
fn tar_with(files: &[(&str, &[u8])], manifest: Option<&[u8]>) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_ustar();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_size(0);
    dir.set_mode(0o700);
    b.append_data(&mut dir, "pg_wal/", &[][..]).unwrap();
    for (path, body) in files.iter().copied().chain(manifest.map(|m| (MEMBER, m))) {
        let mut h = tar::Header::new_ustar();
        h.set_size(body.len() as u64);
        h.set_mode(0o600);
        b.append_data(&mut h, path, body).unwrap();
    }
    b.into_inner().unwrap()
}

fn check(stream: &[u8], chunk: usize) -> Result<Manifest, String> {
    let mut c = Checked::new(Vec::new());
    for piece in stream.chunks(chunk) {
        if c.write_all(piece).is_err() {
            break;
        }
    }
    let (out, manifest, text) = c.finish()?;
    assert_eq!(out, stream, "every byte passed on unchanged");
    assert!(text.ends_with(b"}\n"));
    Ok(manifest)
}

#[test]
fn a_matching_stream_passes_in_any_chunking() {
    let stream = tar_with(&FILES, Some(&manifest_for(&FILES)));
    for chunk in [1, 7, 511, 512, 513, 4096, usize::MAX] {
        let m = check(&stream, chunk).unwrap_or_else(|e| panic!("chunk {chunk}: {e}"));
        assert_eq!(m.files.len(), 3);
        assert_eq!(m.wal_ranges, vec![(1, Lsn(0x2000028), Lsn(0x2000100))]);
    }
}

#[test]
fn every_difference_from_the_manifest_is_named() {
    let manifest = manifest_for(&FILES);
    // One byte of a file changed on the way.
    let mut changed = tar_with(&FILES, Some(&manifest));
    let at = changed.windows(4).position(|w| w == [7, 7, 7, 7]).unwrap() + 100;
    changed[at] = 8;
    assert!(check(&changed, 4096).unwrap_err().contains("base/1/1259's CRC32C"));
    // A file missing, a file extra.
    let missing = tar_with(&FILES[..2], Some(&manifest));
    assert!(check(&missing, 4096).unwrap_err().contains("global/pg_control is in the backup manifest but not"));
    let extra = [FILES[0], FILES[1], FILES[2], ("base/1/9999", b"x")];
    let err = check(&tar_with(&extra, Some(&manifest)), 4096).unwrap_err();
    assert!(err.contains("base/1/9999 is in the backup but not in its manifest"), "{err}");
    // A size that differs.
    let shorter = [FILES[0], ("base/1/1259", &[7u8; 8999][..]), FILES[2]];
    assert!(check(&tar_with(&shorter, Some(&manifest)), 4096).unwrap_err().contains("holds 8999 bytes"));
}

#[test]
fn a_manifest_that_was_altered_is_refused() {
    let mut manifest = manifest_for(&FILES);
    let at = manifest.windows(4).position(|w| w == b"9000").unwrap();
    manifest[at..at + 4].copy_from_slice(b"9001");
    let err = check(&tar_with(&FILES, Some(&manifest)), 4096).unwrap_err();
    assert!(err.contains("manifest's checksum"), "{err}");
    assert!(parse(b"{}").unwrap_err().contains("too short"));
    assert!(parse(b"not json\nat all\n").unwrap_err().contains("does not parse"));
}

#[test]
fn a_cut_or_damaged_stream_is_refused() {
    let stream = tar_with(&FILES, Some(&manifest_for(&FILES)));
    // Cut inside a member, and cut before the end blocks.
    assert!(check(&stream[..3000], 512).unwrap_err().contains("ended early"));
    let end = stream.len() - 1024;
    let body_end = stream[..end].iter().rposition(|b| *b != 0).unwrap();
    let cut = body_end.div_ceil(512) * 512;
    assert!(check(&stream[..cut], 512).unwrap_err().contains("ended early"));
    // No manifest at all (a client before 15).
    let err = check(&tar_with(&FILES, None), 512).unwrap_err();
    assert!(err.contains("pg_basebackup 15 or newer"), "{err}");
    // A header whose bytes changed.
    let mut damaged = stream.clone();
    damaged[512 + 1] ^= 0x20;
    assert!(check(&damaged, 512).unwrap_err().contains("tar header"));
    // Anything after the end.
    let mut trailing = stream.clone();
    trailing.extend_from_slice(&stream[..512]);
    assert!(check(&trailing, 512).unwrap_err().contains("after its end"));
}

#[test]
fn encoded_paths_are_read() {
    let text = b"{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [\n{ \"Encoded-Path\": \"6162ff\", \"Size\": 0 }\n],\n\"WAL-Ranges\": [\n{ \"Timeline\": 2, \"Start-LSN\": \"1/0\", \"End-LSN\": \"1/100\" }\n],\n";
    let mut full = text.to_vec();
    full.extend_from_slice(format!("\"Manifest-Checksum\": \"{}\"}}\n", hex(&sha2::Sha256::digest(text))).as_bytes());
    let m = parse(&full).unwrap();
    assert!(m.files.contains_key(&b"ab\xff"[..]));
    assert!(unhex("6").is_none() && unhex("zz").is_none());
}
