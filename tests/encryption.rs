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

#[test]
fn age_backups_restore_both_ways_and_refuse_what_they_cannot_prove() {
    let Some(fx) = Fixture::start(200) else { return };
    fx.pg.seed_extras("app1", "app");
    let keys = tempfile::tempdir().unwrap();
    let Some((key, public)) = keygen(keys.path(), "key.txt") else { return };
    let Some((other, _)) = keygen(keys.path(), "other.txt") else { return };
    let db = format!("localhost:{}/app1", fx.pg.port);
    let conf = fx.conf(&format!("{db}\n"));
    let r = run(fx.once(&conf).env("BACKUP_ENCRYPTION_RECIPIENTS", &public));
    assert_eq!(r.code, 0, "{}", r.all());
    let file = fx.newest("localhost-app1");
    assert!(file.to_string_lossy().ends_with(".sql.gz.age"), "{}", file.display());
    let bytes = fs::read(&file).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1\n"), "an age file");
    assert!(!bytes.windows(9).any(|w| w == b"customers"), "no plaintext table name in the file");
    let key_rel = file.strip_prefix(fx.backups()).unwrap().display().to_string();
    let m = record(&fx.backups(), &key_rel).unwrap();
    assert_eq!(m["encryption"]["scheme"], "age", "{m}");
    assert_eq!(m["encryption"]["recipients"][0], backup_container::stream::crypt::fingerprint(&public), "{m}");
    assert_eq!(m["complete"], true, "{m}");
    assert!(m["tables"].as_array().unwrap().len() >= 2, "rows counted before encryption: {m}");

    let digest = fx.pg.content_digest("app1");
    fx.pg.psql("app1", "DELETE FROM sales.orders");
    let changed = fx.pg.content_digest("app1");
    let restore = |identity: Option<&Path>| {
        let mut cmd = fx.cmd(&conf);
        cmd.args(["-r", &db, "-s"]);
        if let Some(i) = identity {
            cmd.env("BACKUP_ENCRYPTION_IDENTITY_FILE", i);
        }
        run(&mut cmd)
    };
    // No identity, a wrong one: refused, nothing touched.
    let r = restore(None);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("BACKUP_ENCRYPTION_IDENTITY_FILE is not set"), "{}", r.all());
    let r = restore(Some(&other));
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("does not match") && r.stderr.contains("other.txt"), "{}", r.all());
    let r = restore(Some(&keys.path().join("missing.txt")));
    assert_eq!(r.code, 2, "a configured identity that cannot be read: {}", r.all());
    assert!(r.stderr.contains("missing.txt"), "{}", r.all());
    assert_eq!(fx.pg.content_digest("app1"), changed, "the database was not touched");
    // The identity: restored.
    let r = restore(Some(&key));
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(fx.pg.content_digest("app1"), digest);

    // The age CLI reads our file: age -d | gunzip | psql.
    fx.pg.psql("postgres", "CREATE DATABASE app1_cli");
    let sock = fx.pg.socket_dir().display().to_string();
    let port = fx.pg.port;
    sh(&format!(
        "age -d -i '{}' '{}' | gunzip | psql -q -h '{sock}' -p {port} -U postgres -d app1_cli >/dev/null 2>&1 || true; \
         psql -h '{sock}' -p {port} -U postgres -d app1_cli -tAc 'select 1' >/dev/null",
        key.display(),
        file.display()
    ));
    assert_eq!(fx.pg.row_counts("app1_cli"), fx.pg.row_counts("app1"), "restored through the age CLI");

    // We read the CLI's file: the bash version's stream, gzip, then `age -r`.
    let dated = file.parent().unwrap();
    let theirs = dated.join("localhost-app1_2020-01-01_01-00-00.sql.gz.age");
    sh(&format!(
        "{{ pg_dumpall -h '{sock}' -p {port} -U postgres --roles-only --no-role-passwords; \
           pg_dump -h '{sock}' -p {port} -U postgres -Fp app1; }} | gzip | age -r '{public}' > '{}'",
        theirs.display()
    ));
    // A backup run without the identity leaves it alone (not judged incomplete).
    assert_eq!(run(fx.once(&conf).env("BACKUP_ENCRYPTION_RECIPIENTS", &public)).code, 0);
    let theirs_rel = theirs.strip_prefix(fx.backups()).unwrap().display().to_string();
    let before = record(&fx.backups(), &theirs_rel);
    assert!(before.as_ref().is_none_or(|m| m["complete"] != false), "{before:?}");
    fx.pg.psql("app1", "DELETE FROM sales.orders");
    let mut cmd = fx.cmd(&conf);
    cmd.args(["-r", &db, "-f", theirs.file_name().unwrap().to_str().unwrap(), "-s"]);
    let r = run(cmd.env("BACKUP_ENCRYPTION_IDENTITY_FILE", &key));
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(fx.pg.content_digest("app1"), digest, "restored from the CLI's file");
    assert_eq!(record(&fx.backups(), &theirs_rel).unwrap()["complete"], true, "scanned with the identity");

    // A truncated ciphertext without a record: refused before anything is touched.
    let cut = dated.join("localhost-app1_2020-01-02_01-00-00.sql.gz.age");
    fs::write(&cut, &bytes[..bytes.len() - 200]).unwrap();
    fx.pg.psql("app1", "DELETE FROM sales.orders");
    let changed = fx.pg.content_digest("app1");
    let mut cmd = fx.cmd(&conf);
    cmd.args(["-r", &db, "-f", cut.file_name().unwrap().to_str().unwrap(), "-s"]);
    let r = run(cmd.env("BACKUP_ENCRYPTION_IDENTITY_FILE", &key));
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("corrupt or truncated"), "{}", r.all());
    assert_eq!(fx.pg.content_digest("app1"), changed, "the database was not touched");

    // Verification decrypts with the identity.
    let v = run(fx
        .cmd(&conf)
        .args(["-v", "all"])
        .env("VERIFY_DIR", fx.verify_dir())
        .env("BACKUP_ENCRYPTION_IDENTITY_FILE", &key));
    assert_eq!(v.code, 0, "{}", v.all());
    assert!(backups_under(&fx.backups()).iter().all(|f| f.ends_with(".age")));
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
