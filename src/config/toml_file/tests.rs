//! backup.toml parsing: the layer, databases, schedules, hooks, and line-numbered errors.

use super::*;

const GOOD: &str = r#"
[backup]
dir = "/data/backups"
compression = "zstd"
compression-level = 5

[retention]
daily = 10

[verify]
table-schemas = ["public", "sales"]

[mirrors]
attempts = 5

[mirrors.s3]
endpoint = "https://s3.example.com"
bucket = "team"

[[database]]
spec = "postgres=db:5432/app"
user-env = "APP_DB_USER"
password-file = "/run/secrets/app-db"
exclude-table-data = ["public.audit_log"]

[[schedule]]
cron = "0 1 * * *"
run = "backup"

[[schedule]]
every = "6h"
run = "verify"
target = "db/app"

[[hook]]
name = "checkpoint"
phase = "backup"
stage = "pre"
sql = "CHECKPOINT;"
timeout = "10s"

[[hook]]
phase = "backup"
stage = "post"
command = ["/bin/echo", "done"]
on-error = "continue"
"#;

#[test]
fn a_complete_file_maps_onto_the_variables() {
    let c = parse("backup.toml", GOOD).unwrap();
    let get = |k: &str| c.layer.get(k).map(|(v, _)| v.as_str());
    assert_eq!(get("BACKUP_DIR"), Some("/data/backups"));
    assert_eq!(get("BACKUP_COMPRESSION_LEVEL"), Some("5"));
    assert_eq!(get("DAILY_BACKUPS"), Some("10"));
    assert_eq!(get("TABLE_SCHEMA"), Some("public,sales"));
    assert_eq!(get("S3_BUCKET"), Some("team"));
    assert_eq!(get("MIRROR_ATTEMPTS"), Some("5"));
    assert_eq!(c.layer["DAILY_BACKUPS"].1, "backup.toml:8 [retention] daily");
    assert_eq!(c.databases.len(), 1);
    assert_eq!(c.databases[0].options.exclude_table_data, ["public.audit_log"]);
    assert_eq!(c.databases[0].source, "backup.toml:20");
    let commands: Vec<&str> = c.schedules.iter().map(|s| s.command.as_str()).collect();
    assert_eq!(commands, ["backup-container -s", "backup-container -s -v db/app"]);
    assert_eq!(c.hooks.len(), 2);
    assert_eq!(c.hooks[0].action, Action::Sql("CHECKPOINT;".into()));
    assert_eq!(c.hooks[0].timeout, Duration::from_secs(10));
    assert!(c.hooks[0].fail_on_error && !c.hooks[1].fail_on_error);
    assert_eq!(c.hooks[1].name, "backup-post-2");
}

#[test]
fn unknown_keys_and_bad_values_name_the_line_and_key() {
    let err = parse("b.toml", "[retention]\ndaily = 3\nweekley = 2\n").unwrap_err();
    assert_eq!(err.len(), 1);
    assert!(err[0].starts_with("b.toml:3: unknown key [retention] weekley (known: "), "{}", err[0]);
    let err = parse("b.toml", "[backup]\ndir = \"/x\"\n[nonsense]\na = 1\n").unwrap_err();
    assert!(err[0].starts_with("b.toml:3: unknown field `nonsense`"), "{}", err[0]);
    let err = parse("b.toml", "\n[[hook]]\nphase = \"bakup\"\nstage = \"pre\"\nshell = \"true\"\n").unwrap_err();
    assert!(err[0].starts_with("b.toml:2: [[hook]] phase \"bakup\""), "{}", err[0]);
    let err = parse("b.toml", "[[schedule]]\ncron = \"61 * * * *\"\nrun = \"backup\"\n").unwrap_err();
    assert!(err[0].starts_with("b.toml:1: [[schedule]] invalid cron schedule"), "{}", err[0]);
    let err = parse("b.toml", "[[database]]\nspec = \"nope\"\n").unwrap_err();
    assert!(err[0].contains("b.toml:1: [[database]] spec \"nope\""), "{}", err[0]);
    let err = parse("b.toml", "[[hook]]\nphase = \"run\"\nstage = \"pre\"\nshell = \"a\"\nsql = \"b\"\n").unwrap_err();
    assert!(err[0].contains("exactly one of command"), "{}", err[0]);
}
