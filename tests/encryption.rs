//! Encryption at rest with age, against a real server and Debian's `age` CLI: our encrypted
//! backups hold no plaintext and restore with the identity (and with `age -d | gunzip |
//! psql`); a file the CLI encrypted from a `pg_dumpall -r; pg_dump | gzip` stream is restored
//! by us; a missing or wrong identity and a truncated ciphertext are refused before the
//! target is touched; a backup run without the identity leaves foreign encrypted files alone.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::app::Fixture;
use crate::harness::{backups_under, record, run};

/// `age-keygen -o <dir>/<name>`: the identity file and its public key.
fn keygen(dir: &Path, name: &str) -> Option<(PathBuf, String)> {
    let key = dir.join(name);
    let Ok(out) = Command::new("age-keygen").arg("-o").arg(&key).output() else {
        return crate::harness::missing("age", "age-keygen not on PATH (apt install age)");
    };
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let public = Command::new("age-keygen").arg("-y").arg(&key).output().unwrap();
    Some((key, String::from_utf8(public.stdout).unwrap().trim().to_string()))
}

/// Runs `script` in bash with pipefail; panics with its stderr on failure.
fn sh(script: &str) {
    let out = Command::new("bash").args(["-c", &format!("set -euo pipefail; {script}")]).output().unwrap();
    assert!(out.status.success(), "{script}\n{}", String::from_utf8_lossy(&out.stderr));
}

/// A server with one encrypted backup of app1, and two identities (the right one, another).
struct Encrypted {
    fx: Fixture,
    _keys: tempfile::TempDir,
    key: PathBuf,
    other: PathBuf,
    public: String,
    db: String,
    conf: PathBuf,
    file: PathBuf,
}

impl Encrypted {
    fn start() -> Option<Encrypted> {
        let fx = Fixture::start(200)?;
        fx.pg.seed_extras("app1", "app");
        let keys = tempfile::tempdir().unwrap();
        let (key, public) = keygen(keys.path(), "key.txt")?;
        let (other, _) = keygen(keys.path(), "other.txt")?;
        let db = format!("localhost:{}/app1", fx.pg.port);
        let conf = fx.conf(&format!("{db}\n"));
        let r = run(fx.once(&conf).env("BACKUP_ENCRYPTION_RECIPIENTS", &public));
        assert_eq!(r.code, 0, "{}", r.all());
        let file = fx.newest("localhost-app1");
        Some(Encrypted { fx, _keys: keys, key, other, public, db, conf, file })
    }

    /// `-r` of the newest backup (or the file `from` names) with `identity`.
    fn restore(&self, identity: Option<&Path>, from: Option<&Path>) -> crate::harness::Run {
        let mut cmd = self.fx.cmd(&self.conf);
        cmd.args(["-r", &self.db, "-s"]);
        if let Some(f) = from {
            cmd.args(["-f", f.file_name().unwrap().to_str().unwrap()]);
        }
        if let Some(i) = identity {
            cmd.env("BACKUP_ENCRYPTION_IDENTITY_FILE", i);
        }
        run(&mut cmd)
    }
}

#[test]
fn an_encrypted_backup_holds_no_plaintext_and_records_its_recipient() {
    let Some(e) = Encrypted::start() else { return };
    assert!(e.file.to_string_lossy().ends_with(".sql.gz.age"), "{}", e.file.display());
    let bytes = fs::read(&e.file).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1\n"), "an age file");
    assert!(!bytes.windows(9).any(|w| w == b"customers"), "no plaintext table name in the file");
    let key_rel = e.file.strip_prefix(e.fx.backups()).unwrap().display().to_string();
    let m = record(&e.fx.backups(), &key_rel).unwrap();
    assert_eq!(m["encryption"]["scheme"], "age", "{m}");
    assert_eq!(m["encryption"]["recipients"][0], backup_container::stream::crypt::fingerprint(&e.public), "{m}");
    assert_eq!(m["complete"], true, "{m}");
    assert!(m["tables"].as_array().unwrap().len() >= 2, "rows counted before encryption: {m}");
}

#[test]
fn a_restore_needs_the_identity_and_touches_nothing_without_it() {
    let Some(e) = Encrypted::start() else { return };
    let pg = &e.fx.pg;
    let digest = pg.content_digest("app1");
    pg.psql("app1", "DELETE FROM sales.orders");
    let changed = pg.content_digest("app1");
    // No identity, a wrong one, one that cannot be read: refused, nothing touched.
    let r = e.restore(None, None);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("BACKUP_ENCRYPTION_IDENTITY_FILE is not set"), "{}", r.all());
    let r = e.restore(Some(&e.other), None);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("does not match") && r.stderr.contains("other.txt"), "{}", r.all());
    let r = e.restore(Some(&e.key.with_file_name("missing.txt")), None);
    assert_eq!(r.code, 2, "a configured identity that cannot be read: {}", r.all());
    assert!(r.stderr.contains("missing.txt"), "{}", r.all());
    assert_eq!(pg.content_digest("app1"), changed, "the database was not touched");
    // The identity: restored.
    let r = e.restore(Some(&e.key), None);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(pg.content_digest("app1"), digest);
}

#[test]
fn the_age_cli_reads_our_files_and_we_read_its() {
    let Some(e) = Encrypted::start() else { return };
    let (pg, key, public) = (&e.fx.pg, &e.key, &e.public);
    let digest = pg.content_digest("app1");
    // age -d | gunzip | psql.
    pg.psql("postgres", "CREATE DATABASE app1_cli");
    let sock = pg.socket_dir().display().to_string();
    let port = pg.port;
    sh(&format!(
        "age -d -i '{}' '{}' | gunzip | psql -q -h '{sock}' -p {port} -U postgres -d app1_cli >/dev/null 2>&1 || true; \
         psql -h '{sock}' -p {port} -U postgres -d app1_cli -tAc 'select 1' >/dev/null",
        key.display(),
        e.file.display()
    ));
    assert_eq!(pg.row_counts("app1_cli"), pg.row_counts("app1"), "restored through the age CLI");
    // The bash version's stream, gzip, then `age -r`.
    let theirs = e.file.parent().unwrap().join("localhost-app1_2020-01-01_01-00-00.sql.gz.age");
    sh(&format!(
        "{{ pg_dumpall -h '{sock}' -p {port} -U postgres --roles-only --no-role-passwords; \
           pg_dump -h '{sock}' -p {port} -U postgres -Fp app1; }} | gzip | age -r '{public}' > '{}'",
        theirs.display()
    ));
    // A backup run without the identity leaves it alone (not judged incomplete).
    assert_eq!(run(e.fx.once(&e.conf).env("BACKUP_ENCRYPTION_RECIPIENTS", public)).code, 0);
    let theirs_rel = theirs.strip_prefix(e.fx.backups()).unwrap().display().to_string();
    let before = record(&e.fx.backups(), &theirs_rel);
    assert!(before.as_ref().is_none_or(|m| m["complete"] != false), "{before:?}");
    pg.psql("app1", "DELETE FROM sales.orders");
    let r = e.restore(Some(key), Some(&theirs));
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(pg.content_digest("app1"), digest, "restored from the CLI's file");
    assert_eq!(record(&e.fx.backups(), &theirs_rel).unwrap()["complete"], true, "scanned with the identity");
}

#[test]
fn a_truncated_ciphertext_is_refused_before_anything_is_touched() {
    let Some(e) = Encrypted::start() else { return };
    let bytes = fs::read(&e.file).unwrap();
    // Without a record: the whole stream is decoded first.
    let cut = e.file.parent().unwrap().join("localhost-app1_2020-01-02_01-00-00.sql.gz.age");
    fs::write(&cut, &bytes[..bytes.len() - 200]).unwrap();
    e.fx.pg.psql("app1", "DELETE FROM sales.orders");
    let changed = e.fx.pg.content_digest("app1");
    let r = e.restore(Some(&e.key), Some(&cut));
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("corrupt or truncated"), "{}", r.all());
    assert_eq!(e.fx.pg.content_digest("app1"), changed, "the database was not touched");
}

#[test]
fn verification_decrypts_with_the_identity() {
    let Some(e) = Encrypted::start() else { return };
    let v = run(e
        .fx
        .cmd(&e.conf)
        .args(["-v", "all"])
        .env("VERIFY_DIR", e.fx.verify_dir())
        .env("BACKUP_ENCRYPTION_IDENTITY_FILE", &e.key));
    assert_eq!(v.code, 0, "{}", v.all());
    assert!(backups_under(&e.fx.backups()).iter().all(|f| f.ends_with(".age")));
    let v = run(e.fx.cmd(&e.conf).args(["-v", "all"]).env("VERIFY_DIR", e.fx.verify_dir()));
    assert_eq!(v.code, 1, "without the identity: {}", v.all());
}

/// SSH keys as recipients and identities (`ssh-keygen -t ed25519`, no passphrase), and a
/// passphrase-protected key refused with a clear message.
#[test]
fn ssh_keys_encrypt_and_decrypt() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id_ed25519");
    let Ok(out) = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&key).output() else {
        crate::harness::missing::<()>("age", "ssh-keygen not on PATH (apt install openssh-client)");
        return;
    };
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let public = fs::read_to_string(key.with_extension("pub")).unwrap();
    let recipients = backup_container::stream::crypt::Recipients::parse(&public).unwrap();
    let mut sealed = recipients.seal(Vec::new()).unwrap();
    sealed.write_all(b"-- dump\n").unwrap();
    let ciphertext = sealed.finish().unwrap();
    let keys = backup_container::stream::crypt::Keys { identity_file: Some(key.clone()) };
    let mut plain = String::new();
    keys.open(Path::new("x.sql.gz.age"), ciphertext.as_slice()).unwrap().read_to_string(&mut plain).unwrap();
    assert_eq!(plain, "-- dump\n");
    // The age CLI reads it with the same key.
    let file = dir.path().join("x.age");
    fs::write(&file, &ciphertext).unwrap();
    let cli = Command::new("age").arg("-d").arg("-i").arg(&key).arg(&file).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&cli.stdout), "-- dump\n", "{}", String::from_utf8_lossy(&cli.stderr));
    let locked = dir.path().join("locked");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "a passphrase", "-f"])
        .arg(&locked)
        .output()
        .unwrap();
    assert!(out.status.success());
    let keys = backup_container::stream::crypt::Keys { identity_file: Some(locked) };
    let err = keys.open(Path::new("x.sql.gz.age"), ciphertext.as_slice()).err().unwrap().to_string();
    assert!(err.contains("passphrase-protected"), "{err}");
}
