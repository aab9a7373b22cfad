//! The progress line of an attended backup: drawn in place on a terminal (under `script`, a
//! real pty), with an estimate from the previous backup's size; never drawn without one.

use std::process::Command;

use crate::harness::app::Fixture;
use crate::harness::run;

#[test]
fn a_terminal_gets_a_live_line_and_a_pipe_gets_none() {
    let Some(fx) = Fixture::start(5) else { return };
    // A database whose dump takes a few seconds, so that the line is drawn at least once.
    fx.pg.psql(
        "app1",
        "SET ROLE app; CREATE TABLE public.bulk AS SELECT g AS id, repeat(md5(g::text), 8) AS note FROM generate_series(1, 1500000) g",
    );
    let conf = fx.conf(&format!("localhost:{}/app1\n", fx.pg.port));
    // Not a terminal: nothing drawn (no carriage returns, no progress text).
    let r = run(&mut fx.once(&conf));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(!r.all().contains('\r') && !r.all().contains("dumped"), "{}", r.all());

    // Under a pty: the same command, its environment passed through `script`.
    let once = fx.once(&conf);
    let mut script = Command::new("script");
    script.args(["-qefc", &format!("{} -1", once.get_program().to_string_lossy()), "/dev/null"]);
    script.env_clear();
    for (k, v) in once.get_envs() {
        if let Some(v) = v {
            script.env(k, v);
        }
    }
    let out = script.stdin(std::process::Stdio::null()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let line = text.split('\r').find(|l| l.contains("dumped of ~")).unwrap_or_else(|| panic!("no live line: {text:?}"));
    eprintln!("live line: {line}");
    let estimate = line.contains("left") || line.contains("nearly done");
    assert!(line.contains("localhost:") && line.contains("/s,") && estimate, "{line}");
}
