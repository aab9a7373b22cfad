//! Line parser for `backup.conf`: database spec lines and cron lines.
//!
//! Returns everything it understood plus one error per bad line (ripgrep's rc-file style), so
//! a user sees all problems at once. It does not read files or the environment.
//!
//! Differences from upstream (docs/CONFIG.md): trailing `# comments` are stripped instead of
//! dropping the whole line; CRLF and surrounding blanks are tolerated; dots are valid in
//! hosts; a line that is neither a spec nor a valid cron line is an error, never a "cron line".

use std::fmt;

use crate::model::schedule::Schedule;
use crate::model::spec::DatabaseSpec;

/// A problem on one line of a config file, printed as `file:line: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

/// A database spec and the line it came from.
#[derive(Debug, Clone)]
pub struct SpecLine {
    pub line: usize,
    pub spec: DatabaseSpec,
}

/// A crontab-style line: `m h dom mon dow user command`.
#[derive(Debug, Clone)]
pub struct CronLine {
    pub line: usize,
    pub schedule: Schedule,
    /// The user column (convention `default`); parsed and ignored, as go-crond did.
    pub user: String,
    pub command: String,
}

impl fmt::Display for CronLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.schedule, self.user, self.command)
    }
}

/// What a cron line's command does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CronAction {
    /// `./backup.sh -s` (or `-1`, or the binary itself): a backup run, in-process.
    Backup,
    /// `./backup.sh -s -v all` or `-v <spec>`: a verification, in-process.
    Verify(String),
    /// `./backup.sh -p`: retention, in-process.
    Prune,
    /// `backup-container --pitr-base` / `--pitr-incremental` (backup.toml's `run = "pitr-base"`,
    /// `"pitr-incremental"`): when the archive's base backups are due; taken out of the cron
    /// lines into the point-in-time settings when the configuration is read.
    PitrBase,
    PitrIncremental,
    /// `--pitr-drill` (`run = "pitr-drill"`): when PITR drills are due.
    PitrDrill,
    /// Anything else: run with `/bin/sh -c`.
    Shell,
}

/// The command a `run = "pitr-base"` schedule stands for.
pub const PITR_BASE_COMMAND: &str = "backup-container --pitr-base";
/// The command a `run = "pitr-drill"` schedule stands for.
pub const PITR_DRILL_COMMAND: &str = "backup-container --pitr-drill";
/// The command a `run = "pitr-incremental"` schedule stands for.
pub const PITR_INCREMENTAL_COMMAND: &str = "backup-container --pitr-incremental";

impl CronLine {
    /// Interprets the command: a call of `backup.sh` (any path) or `backup-container` runs the
    /// matching mode in-process; any other command is a shell command.
    pub fn action(&self) -> CronAction {
        let mut words = self.command.split_whitespace();
        let program = words.next().unwrap_or_default();
        let name = program.rsplit('/').next().unwrap_or_default();
        if name != "backup.sh" && name != "backup-container" {
            return CronAction::Shell;
        }
        let args: Vec<&str> = words.collect();
        if args.contains(&"--pitr-base") {
            return CronAction::PitrBase;
        }
        if args.contains(&"--pitr-incremental") {
            return CronAction::PitrIncremental;
        }
        if args.contains(&"--pitr-drill") {
            return CronAction::PitrDrill;
        }
        if let Some(i) = args.iter().position(|a| *a == "-v" || *a == "--verify") {
            return CronAction::Verify(args.get(i + 1).unwrap_or(&"all").to_string());
        }
        if args.iter().any(|a| *a == "-p" || *a == "--prune") {
            return CronAction::Prune;
        }
        CronAction::Backup
    }
}

/// Everything parsed from one backup.conf.
#[derive(Debug, Default)]
pub struct ConfFile {
    pub specs: Vec<SpecLine>,
    pub cron: Vec<CronLine>,
    pub errors: Vec<LineError>,
}

/// Parses backup.conf text. `file` is the name used in error messages.
pub fn parse(file: &str, text: &str) -> ConfFile {
    let mut out = ConfFile::default();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let content = strip_comment(raw.trim_end_matches('\r')).trim();
        if content.is_empty() {
            continue;
        }
        let result = if content.contains(char::is_whitespace) {
            parse_cron(content).map(|c| out.cron.push(CronLine { line, ..c }))
        } else {
            parse_spec(content).map(|spec| out.specs.push(SpecLine { line, spec }))
        };
        if let Err(message) = result {
            out.errors.push(LineError { file: file.to_string(), line, message });
        }
    }
    out
}

/// Removes a comment: a line starting with `#`, or ` #...` / `\t#...` at the end.
fn strip_comment(line: &str) -> &str {
    if line.trim_start().starts_with('#') {
        return "";
    }
    let bytes = line.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'#' && i > 0 && bytes[i - 1].is_ascii_whitespace() {
            return &line[..i];
        }
    }
    line
}

fn parse_spec(text: &str) -> Result<DatabaseSpec, String> {
    if !text.contains('/') && text.contains('=') {
        return Err(format!(
            "\"{text}\" looks like an environment assignment; backup.conf holds only database specs \
             ([type=]host[:port]/database) and cron lines; set variables in the container environment"
        ));
    }
    text.parse::<DatabaseSpec>().map_err(|e| format!("invalid database spec \"{text}\": {e}"))
}

fn parse_cron(text: &str) -> Result<CronLine, String> {
    let tokens: Vec<&str> = text.split_whitespace().collect();
    let schedule_len = match tokens[0] {
        t if t.eq_ignore_ascii_case("@every") => 2,
        t if t.starts_with('@') => 1,
        _ => 5,
    };
    if tokens.len() < schedule_len + 2 {
        let hint =
            if tokens.len() <= 2 && text.contains('/') { " (a database spec may not contain spaces)" } else { "" };
        return Err(format!(
            "\"{text}\" is neither a database spec ([type=]host[:port]/database) nor a cron line \
             (minute hour day-of-month month day-of-week user command){hint}"
        ));
    }
    let schedule: Schedule = tokens[..schedule_len].join(" ").parse()?;
    // The command keeps its original spacing: take the text after the user column.
    let user = tokens[schedule_len];
    let command = text_after_tokens(text, schedule_len + 1).to_string();
    Ok(CronLine { line: 0, schedule, user: user.to_string(), command })
}

/// The remainder of `text` after skipping `n` whitespace-separated tokens.
fn text_after_tokens(text: &str, n: usize) -> &str {
    let mut rest = text.trim_start();
    for _ in 0..n {
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        rest = rest[end..].trim_start();
    }
    rest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs_cron_lines_and_comments() {
        let text = "# a comment\n\
                    \n\
                    postgres=db:5432/app\r\n\
                    other-db/reporting   # trailing comment\n\
                    db.example.com/app\n\
                    1 1 * * * default ./backup.sh -s\n\
                    1 4 * * * default ./backup.sh -s -v all # nightly verify\n\
                    @daily default ./backup.sh -s\n\
                    @every 6h default ./backup.sh -s\n";
        let conf = parse("backup.conf", text);
        assert!(conf.errors.is_empty(), "{:?}", conf.errors);
        let specs: Vec<String> = conf.specs.iter().map(|s| s.spec.to_string()).collect();
        assert_eq!(specs, ["postgres=db:5432/app", "other-db/reporting", "db.example.com/app"]);
        assert_eq!(conf.specs[0].line, 3);
        let cron: Vec<String> = conf.cron.iter().map(|c| c.command.clone()).collect();
        assert_eq!(cron, ["./backup.sh -s", "./backup.sh -s -v all", "./backup.sh -s", "./backup.sh -s"]);
        assert_eq!(conf.cron[0].user, "default");
        assert_eq!(conf.cron[1].line, 7);
    }

    #[test]
    fn each_bad_line_is_reported_with_its_number() {
        let text = "postgres=db/app\n\
                    postgress=db/app\n\
                    db:abc/app\n\
                    1 1 * * ./backup.sh -s\n\
                    61 1 * * * default ./backup.sh -s\n\
                    hello\n\
                    FOO=bar\n\
                    db /app\n";
        let conf = parse("/conf/backup.conf", text);
        let lines: Vec<usize> = conf.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(conf.specs.len(), 1);
        let first = conf.errors[0].to_string();
        assert!(
            first.starts_with("/conf/backup.conf:2: invalid database spec \"postgress=db/app\": unknown database type"),
            "{first}"
        );
        assert!(conf.errors[3].message.contains("invalid cron schedule"), "{}", conf.errors[3]);
        assert!(conf.errors[5].message.contains("environment assignment"));
        assert!(conf.errors[6].message.contains("may not contain spaces"));
    }

    #[test]
    fn cron_commands_are_interpreted() {
        let conf = parse(
            "b",
            "1 1 * * * default ./backup.sh -s\n\
             1 4 * * * default ./backup.sh -s -v all\n\
             1 5 * * * default /backup.sh -s -v db/app\n\
             1 6 * * * default backup-container -p\n\
             1 7 * * * default echo hello\n",
        );
        let actions: Vec<CronAction> = conf.cron.iter().map(CronLine::action).collect();
        assert_eq!(
            actions,
            [
                CronAction::Backup,
                CronAction::Verify("all".into()),
                CronAction::Verify("db/app".into()),
                CronAction::Prune,
                CronAction::Shell
            ]
        );
    }

    #[test]
    fn hash_inside_a_word_is_not_a_comment() {
        let conf = parse("b", "1 1 * * * default echo a#b\n");
        assert_eq!(conf.cron[0].command, "echo a#b");
    }
}
