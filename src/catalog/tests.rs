//! The catalog: what a walk finds, what it reads, what tidying writes.

use super::*;

fn touch(root: &Path, rel: &str) -> PathBuf {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, b"x").unwrap();
    p
}

#[test]
fn scan_finds_ours_and_upstreams_and_ignores_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let a = touch(root, "daily/2026-11-20/db-app_2026-11-20_01-00-00.sql.gz");
    std::fs::write(
        root.join("daily/2026-11-20/db-app_2026-11-20_01-00-00.sql.gz.sha256"),
        format!("{}  db-app_2026-11-20_01-00-00.sql.gz\n", "ab".repeat(32)),
    )
    .unwrap();
    touch(root, "daily/2026-11-20/db-app_2026-11-20_01-00-00.sql.gz.verified");
    touch(root, "2026-11-19/db-app_2026-11-19_01-00-00.sql.gz");
    touch(root, "weekly/2026-11-22/db-app_2026-11-22_01-00-00.sql.gz.in_progress");
    touch(root, "backup.sql");
    touch(root, "daily/2026-11-20/notes.txt");
    touch(root, "misc/2026-11-20/db-app_2026-11-20_01-00-00.sql.gz");
    let found = scan(root).unwrap();
    let rels: Vec<String> = found.iter().map(|b| b.rel.display().to_string()).collect();
    assert_eq!(
        rels,
        [
            "2026-11-19/db-app_2026-11-19_01-00-00.sql.gz",
            "daily/2026-11-20/db-app_2026-11-20_01-00-00.sql.gz",
            "weekly/2026-11-22/db-app_2026-11-22_01-00-00.sql.gz.in_progress",
        ]
    );
    // The old sidecars moved into the manifest and left the dated folder.
    assert_eq!(found[1].sha256(), Some("ab".repeat(32).as_str()));
    assert_eq!(found[1].manifest.as_ref().unwrap().origin, Origin::Migrated);
    assert!(found[0].manifest.is_none());
    assert!(!root.join("daily/2026-11-20/db-app_2026-11-20_01-00-00.sql.gz.sha256").exists());
    assert!(!root.join("daily/2026-11-20/db-app_2026-11-20_01-00-00.sql.gz.verified").exists());
    assert!(found[2].in_progress);
    assert_eq!(found[1].path, a);
    // A second scan reads the record; the record of a deleted backup is dropped.
    assert_eq!(scan(root).unwrap()[1].sha256(), Some("ab".repeat(32).as_str()));
    std::fs::remove_file(&a).unwrap();
    scan(root).unwrap();
    assert!(manifest::read(root, "daily/2026-11-20/db-app_2026-11-20_01-00-00.sql.gz").is_none());
    assert_eq!(std::fs::read_dir(root.join(manifest::CATALOG_DIR)).unwrap().count(), 0);
}

/// A backup renamed from `.in_progress` (and its record written) while another job walked
/// the folder keeps its record; a record whose backup is gone is dropped.
#[test]
fn a_record_written_during_a_walk_is_not_an_orphan() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let renamed = "daily/2026-11-20/db-app_2026-11-20_01-00-00.sql.gz";
    touch(root, renamed);
    manifest::write(root, &Manifest::new(renamed, Origin::Written, 1)).unwrap();
    let gone = "daily/2026-11-19/db-app_2026-11-19_01-00-00.sql.gz";
    manifest::write(root, &Manifest::new(gone, Origin::Written, 1)).unwrap();
    // The walk saw neither final file (one was still `.in_progress`, one is deleted).
    tidy::drop_orphans(root, &[]);
    assert!(manifest::read(root, renamed).is_some(), "kept: its backup exists now");
    assert!(manifest::read(root, gone).is_none(), "dropped: its backup is gone");
}

/// `load` writes nothing; `tidy` moves sidecars and drops orphans; `reload` reads only the
/// records that changed.
#[test]
fn load_is_pure_and_reload_reads_only_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let keys: Vec<String> =
        (1..=5).map(|d| format!("daily/2026-11-0{d}/db-app_2026-11-0{d}_01-00-00.sql.gz")).collect();
    for k in &keys[..4] {
        touch(root, k);
        manifest::write(root, &Manifest::new(k, Origin::Written, 1)).unwrap();
    }
    let sidecar = format!("{}.sha256", keys[4]);
    touch(root, &keys[4]);
    fs::write(root.join(&sidecar), format!("{}  x\n", "cd".repeat(32))).unwrap();
    let orphan = "daily/2026-10-01/db-app_2026-10-01_01-00-00.sql.gz";
    manifest::write(root, &Manifest::new(orphan, Origin::Written, 1)).unwrap();
    let reads = || record_reads_of(root);
    let first = load(root).unwrap();
    assert_eq!(reads(), 4, "one read per record");
    assert_eq!(first[4].sha256(), Some("cd".repeat(32).as_str()), "the sidecar read in memory");
    assert!(root.join(&sidecar).exists() && manifest::read(root, orphan).is_some(), "load wrote nothing");
    // Nothing changed: no record read.
    let again = reload(root, &first).unwrap();
    assert_eq!((reads(), again.len()), (4, 5));
    assert_eq!(
        again.iter().map(|b| b.manifest.clone()).collect::<Vec<_>>(),
        first.iter().map(|b| b.manifest.clone()).collect::<Vec<_>>()
    );
    // One record rewritten (a verification), one backup added: two reads.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let mut m = manifest::read(root, &keys[1]).unwrap();
    m.size_bytes = 1;
    m.engine = Some("postgres".into());
    manifest::write(root, &m).unwrap();
    let before = reads();
    let added = "daily/2026-11-06/db-app_2026-11-06_01-00-00.sql.gz";
    touch(root, added);
    manifest::write(root, &Manifest::new(added, Origin::Written, 1)).unwrap();
    let third = reload(root, &again).unwrap();
    assert_eq!(reads() - before, 2, "the changed record and the new one");
    assert_eq!(third[1].manifest.as_ref().unwrap().engine.as_deref(), Some("postgres"));
    assert_eq!(third.len(), 6);
    // Tidy: the sidecar into a record, the orphan dropped.
    let mut files = third;
    tidy::tidy(root, &mut files);
    assert!(!root.join(&sidecar).exists());
    assert_eq!(manifest::read(root, &keys[4]).unwrap().sha256, Some("cd".repeat(32)));
    assert!(manifest::read(root, orphan).is_none());
}
