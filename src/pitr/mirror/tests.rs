//! Mirror passes on a real archive folder, with the backup folder of another place as the
//! mirror (`LocalStorage`) and a mirror that refuses everything.

use std::path::Path;

use super::*;
use crate::pitr::index::{Archived, Event};
use crate::storage::RemoteObject;
use crate::storage::local::LocalStorage;

const MIB: u64 = 1 << 20;

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn segment(archive: &Archive, n: u64) -> std::path::PathBuf {
    let seg = crate::pitr::wal::Segment { timeline: 1, number: n };
    let path = archive.wal(1, &seg.name(MIB), ".gz");
    write(&path, &format!("segment {n}"));
    index::append(
        &archive.index(),
        &Event::Segment(Archived { timeline: 1, number: n, size: 9, sha256: String::new(), received_at: Utc::now() }),
    )
    .unwrap();
    path
}

/// Refuses every upload.
struct Refusing;

impl Storage for Refusing {
    fn name(&self) -> String {
        "refusing".into()
    }
    fn put(&self, _: &Path, key: &str) -> anyhow::Result<()> {
        anyhow::bail!("no room for {key}")
    }
    fn list(&self) -> anyhow::Result<Vec<RemoteObject>> {
        Ok(Vec::new())
    }
    fn stream(&self, _: &str, _: &mut crate::storage::Sink) -> anyhow::Result<u64> {
        anyhow::bail!("nothing here")
    }
    fn delete(&self, _: &str) -> anyhow::Result<()> {
        Ok(())
    }
    fn prunes(&self) -> bool {
        false
    }
}

#[test]
fn a_pass_copies_what_is_new_remembers_it_and_follows_retention() {
    let dir = tempfile::tempdir().unwrap();
    let (backups, remote) = (dir.path().join("backups"), dir.path().join("remote"));
    let archive = Archive::new(&backups, "db", 5432);
    std::fs::create_dir_all(&archive.dir).unwrap();
    index::append(&archive.index(), &Event::Started { segment_size: MIB, server: "db:5432".into() }).unwrap();
    let first = segment(&archive, 1);
    segment(&archive, 2);
    write(&archive.dir.join("wal/00000001/000000010000000000000003.gz.in_progress"), "half");
    let mirror = || Box::new(LocalStorage::new(&remote)) as Box<dyn Storage>;
    let mut m = Mirrors::new(archive.clone(), vec![mirror()], None).unwrap();
    let out = m.pass(false);
    assert!(out.problem.is_none(), "{out:?}");
    assert!(out.behind_since.is_none(), "all there: {out:?}");
    let copy = |p: &Path| remote.join(p.strip_prefix(&backups).unwrap());
    assert_eq!(std::fs::read_to_string(copy(&first)).unwrap(), "segment 1");
    assert_eq!(std::fs::read(copy(&archive.index())).unwrap(), std::fs::read(archive.index()).unwrap());
    assert!(!copy(&archive.dir.join("wal/00000001/000000010000000000000003.gz.in_progress")).exists());
    assert!(!remote.join("pitr/db_5432/mirrored").exists(), "the ledgers stay here");

    // A new mirror object for the same place reads the ledger: nothing is sent again.
    std::fs::remove_file(copy(&first)).unwrap();
    let mut again = Mirrors::new(archive.clone(), vec![mirror()], None).unwrap();
    assert!(again.pass(true).problem.is_none());
    assert!(!copy(&first).exists(), "the ledger says it was sent");

    // Retention removes segment 1 (recorded in the index first): its copy goes too. A
    // segment lost here but still in the index keeps its copy.
    index::append(&archive.index(), &Event::Removed { timeline: 1, number: 1 }).unwrap();
    let second = archive.wal(1, &crate::pitr::wal::Segment { timeline: 1, number: 2 }.name(MIB), ".gz");
    std::fs::remove_file(&second).unwrap();
    write(&copy(&first), "segment 1");
    std::fs::remove_file(&first).unwrap();
    assert!(again.pass(true).problem.is_none());
    assert!(!copy(&first).exists(), "retention's removal followed");
    assert!(copy(&second).exists(), "a file lost here is never deleted there");
}

#[test]
fn a_failing_mirror_is_reported_with_how_far_behind_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().join("backups");
    let archive = Archive::new(&backups, "db", 5432);
    std::fs::create_dir_all(&archive.dir).unwrap();
    index::append(&archive.index(), &Event::Started { segment_size: MIB, server: "db:5432".into() }).unwrap();
    segment(&archive, 1);
    let mut m = Mirrors::new(archive.clone(), vec![Box::new(Refusing)], None).unwrap();
    let out = m.pass(false);
    let problem = out.problem.unwrap();
    assert!(problem.contains("refusing") && problem.contains("no room for pitr/db_5432/wal/00000001/"), "{problem}");
    let behind = out.behind_since.expect("behind");
    assert!(Utc::now() - behind < chrono::Duration::seconds(60), "{behind}");
}
