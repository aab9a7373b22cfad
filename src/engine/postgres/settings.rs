//! The database's own settings, which `pg_dump` without `--create` leaves out: `ALTER DATABASE
//! ... SET`, `ALTER ROLE ... IN DATABASE ... SET`, the database comment and privileges, and its
//! encoding and locale. Captured at backup time into a section of plain SQL between the roles
//! section and the pg_dump output (contract C4, extended):
//!
//! ```text
//! --
//! -- backup-container database settings
//! --
//! -- encoding: UTF8            (metadata our restore reads to create the database)
//! -- ...
//! DO $bc$BEGIN EXECUTE format('ALTER DATABASE %I SET ...', current_database()); EXCEPTION ... END$bc$;
//! --
//! -- backup-container database settings complete
//! --
//! ```
//!
//! Every statement names the database through `current_database()`, so it applies under any
//! name (the bash version's `gunzip | psql -d NAME` runs it in NAME), and is tolerant: a
//! failure (a role missing on the target, a setting only a superuser may set) is a WARNING,
//! never the end of the restore. Our restore takes the section off the front, creates the
//! database with the recorded encoding and locale, hands it to the recorded owner when that
//! role exists, and applies the statements after the load.

use serde::Deserialize;

use crate::stream::scan::{SETTINGS_FOOTER, SETTINGS_HEADER};

/// Settings that pg_dump splits into list elements (`variable_is_guc_list_quote`).
const LIST_SETTINGS: [&str; 6] = [
    "local_preload_libraries",
    "search_path",
    "session_preload_libraries",
    "shared_preload_libraries",
    "temp_tablespaces",
    "unix_socket_directories",
];

/// The capture query: one JSON object, on every server version. The locale provider and the
/// ICU locale are read from the row as JSON (`datlocprovider` from 15, `daticulocale` 15-16,
/// `datlocale` from 17), so one query serves them all and needs no version first.
pub const CAPTURE_QUERY: &str = "SELECT json_build_object(\
     'encoding', pg_catalog.pg_encoding_to_char(d.encoding), 'collate', d.datcollate, 'ctype', d.datctype, \
     'provider', COALESCE(pg_catalog.to_jsonb(d) ->> 'datlocprovider', 'c'), \
     'icu_locale', COALESCE(pg_catalog.to_jsonb(d) ->> 'datlocale', pg_catalog.to_jsonb(d) ->> 'daticulocale'), \
     'owner', pg_catalog.pg_get_userbyid(d.datdba), \
     'comment', pg_catalog.shobj_description(d.oid, 'pg_database'), 'default_acl', d.datacl IS NULL, \
     'acl', (SELECT json_agg(json_build_object('grantee', CASE WHEN a.grantee = 0 THEN NULL \
             ELSE pg_catalog.pg_get_userbyid(a.grantee) END, 'privilege', a.privilege_type, \
             'grantable', a.is_grantable) ORDER BY 1) FROM pg_catalog.aclexplode(d.datacl) a), \
     'settings', (SELECT json_agg(json_build_object('role', CASE WHEN s.setrole = 0 THEN NULL \
             ELSE pg_catalog.pg_get_userbyid(s.setrole) END, 'config', s.setconfig) ORDER BY s.setrole) \
             FROM pg_catalog.pg_db_role_setting s WHERE s.setdatabase = d.oid)) \
     FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()";

/// What the capture query returns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Captured {
    pub encoding: String,
    pub collate: String,
    pub ctype: String,
    pub provider: String,
    pub icu_locale: Option<String>,
    pub owner: String,
    pub comment: Option<String>,
    pub default_acl: bool,
    pub acl: Option<Vec<Grant>>,
    pub settings: Option<Vec<RoleSettings>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Grant {
    /// `None` = PUBLIC.
    pub grantee: Option<String>,
    pub privilege: String,
    pub grantable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RoleSettings {
    /// `None` = the database itself (`ALTER DATABASE ... SET`).
    pub role: Option<String>,
    pub config: Vec<String>,
}

/// How a database must be created to match the backup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Locale {
    pub encoding: String,
    pub collate: String,
    pub ctype: String,
    /// `libc` or `icu` (`builtin` on PostgreSQL 17+).
    pub provider: String,
    pub icu_locale: Option<String>,
}

impl Locale {
    /// The `CREATE DATABASE` options (after `TEMPLATE template0`) for a server of `major`.
    pub fn create_options(&self, major: u32) -> String {
        let lit = |s: &str| super::quote_literal(s);
        let mut out = format!(
            " ENCODING {} LC_COLLATE {} LC_CTYPE {}",
            lit(&self.encoding),
            lit(&self.collate),
            lit(&self.ctype)
        );
        if major >= 15 && self.provider != "libc" && !self.provider.is_empty() {
            out.push_str(&format!(" LOCALE_PROVIDER {}", self.provider));
            if let Some(icu) = self.icu_locale.as_deref().filter(|s| !s.is_empty()) {
                let key = if major >= 17 { "LOCALE" } else { "ICU_LOCALE" };
                out.push_str(&format!(" {key} {}", lit(icu)));
            }
        }
        out
    }
}

fn provider_name(code: &str) -> &str {
    match code {
        "i" => "icu",
        "b" => "builtin",
        _ => "libc",
    }
}

/// Renders the section for `captured`.
pub fn render(c: &Captured) -> String {
    let meta = |s: &str| s.replace(['\n', '\r'], " ");
    let mut out = format!(
        "--\n{SETTINGS_HEADER}\n--\n\
         -- The database's own settings, comment and privileges, applied to the database this runs in\n\
         -- (whatever its name); each statement only warns if it cannot be applied.\n\
         -- encoding: {}\n-- lc_collate: {}\n-- lc_ctype: {}\n-- locale_provider: {}\n-- icu_locale: {}\n-- owner: {}\n--\n\n",
        meta(&c.encoding),
        meta(&c.collate),
        meta(&c.ctype),
        provider_name(&c.provider),
        meta(c.icu_locale.as_deref().unwrap_or("")),
        meta(&c.owner),
    );
    let mut statements = Vec::new();
    for s in c.settings.iter().flatten() {
        for item in &s.config {
            let Some((name, value)) = item.split_once('=') else { continue };
            let target = match &s.role {
                Some(role) => format!("ALTER ROLE {} IN DATABASE %I", super::quote_ident(role)),
                None => "ALTER DATABASE %I".to_string(),
            };
            statements.push(format!("{target} SET {} TO {}", super::quote_ident(name), setting_value(name, value)));
        }
    }
    if let Some(comment) = &c.comment {
        statements.push(format!("COMMENT ON DATABASE %I IS {}", super::quote_literal(comment)));
    }
    if !c.default_acl {
        statements.push("REVOKE ALL ON DATABASE %I FROM PUBLIC".to_string());
        for g in c.acl.iter().flatten() {
            let to = g.grantee.as_deref().map_or("PUBLIC".to_string(), super::quote_ident);
            let option = if g.grantable { " WITH GRANT OPTION" } else { "" };
            statements.push(format!("GRANT {} ON DATABASE %I TO {to}{option}", g.privilege));
        }
    }
    for s in statements {
        out.push_str(&tolerant(&s));
    }
    out.push_str(&format!("\n--\n{SETTINGS_FOOTER}\n--\n\n"));
    out
}

/// `value` as pg_dump writes it: list settings element by element, others as one literal.
fn setting_value(name: &str, value: &str) -> String {
    if LIST_SETTINGS.contains(&name.to_ascii_lowercase().as_str()) {
        split_guc_list(value).iter().map(|v| super::quote_literal(v)).collect::<Vec<_>>().join(", ")
    } else {
        super::quote_literal(value)
    }
}

/// PostgreSQL's `SplitGUCList`: comma-separated, elements optionally double-quoted (`""`
/// inside quotes is a quote), whitespace around elements dropped.
pub fn split_guc_list(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = value.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut item = String::new();
        let quoted = chars.peek() == Some(&'"');
        if quoted {
            chars.next();
            while let Some(c) = chars.next() {
                if c == '"' {
                    if chars.peek() == Some(&'"') {
                        chars.next();
                        item.push('"');
                    } else {
                        break;
                    }
                } else {
                    item.push(c);
                }
            }
            while chars.peek().is_some_and(|c| *c != ',') {
                chars.next();
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                item.push(c);
                chars.next();
            }
            item = item.trim_end().to_string();
        }
        if quoted || !(item.is_empty() && out.is_empty() && chars.peek().is_none()) {
            out.push(item);
        }
        if chars.next().is_none() {
            break;
        }
    }
    out
}

/// `template` (with `%I` where the database name goes) as a DO block that runs it for the
/// current database and turns a failure into a WARNING.
fn tolerant(template: &str) -> String {
    let template = template.replace('%', "%%").replace("%%I", "%I");
    let body = format!(
        "BEGIN EXECUTE format({}, pg_catalog.current_database()); EXCEPTION WHEN OTHERS THEN \
         RAISE WARNING 'backup-container: a database setting was not restored: %', SQLERRM; END",
        super::quote_literal(&template)
    );
    let mut tag = "$bc$".to_string();
    let mut n = 0;
    while body.contains(&tag) {
        n += 1;
        tag = format!("$bc{n}$");
    }
    format!("DO {tag}{body}{tag};\n")
}

/// A metadata line (`-- KEY: value`) of a settings section, read only from the comment block
/// that starts at its header (the lines read before the header may hold blank lines): nothing
/// in a statement below it (a database comment spanning lines) can pose as one.
fn meta_field(section: &str, key: &str) -> Option<String> {
    let prefix = format!("-- {key}: ");
    section
        .lines()
        .skip_while(|l| l.trim_end() != SETTINGS_HEADER)
        .take_while(|l| l.starts_with("--"))
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().to_string())
}

/// Reads the locale lines of a settings section (our restore creates the database with them).
pub fn parse_locale(section: &str) -> Option<Locale> {
    let field = |key| meta_field(section, key);
    Some(Locale {
        encoding: field("encoding").filter(|e| !e.is_empty())?,
        collate: field("lc_collate")?,
        ctype: field("lc_ctype")?,
        provider: field("locale_provider").unwrap_or_else(|| "libc".into()),
        icu_locale: field("icu_locale").filter(|s| !s.is_empty()),
    })
}

/// The database's owner when it was backed up, from the section's metadata.
pub fn parse_owner(section: &str) -> Option<String> {
    meta_field(section, "owner").filter(|o| !o.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn captured() -> Captured {
        Captured {
            encoding: "LATIN1".into(),
            collate: "C".into(),
            ctype: "C".into(),
            provider: "i".into(),
            icu_locale: Some("und".into()),
            owner: "app".into(),
            comment: Some("it's 100% ours".into()),
            default_acl: false,
            acl: Some(vec![
                Grant { grantee: None, privilege: "TEMPORARY".into(), grantable: false },
                Grant { grantee: Some("reporting".into()), privilege: "CONNECT".into(), grantable: true },
            ]),
            settings: Some(vec![
                RoleSettings {
                    role: None,
                    config: vec!["timezone=Asia/Tokyo".into(), "search_path=\"$user\", public, \"odd, schema\"".into()],
                },
                RoleSettings { role: Some("app".into()), config: vec!["work_mem=8MB".into()] },
            ]),
        }
    }

    #[test]
    fn section_is_tolerant_sql_that_names_the_current_database() {
        let text = render(&captured());
        assert!(text.starts_with(&format!("--\n{SETTINGS_HEADER}\n--\n")));
        assert!(text.ends_with(&format!("--\n{SETTINGS_FOOTER}\n--\n\n")));
        assert!(text.contains(
            "DO $bc$BEGIN EXECUTE format('ALTER DATABASE %I SET \"timezone\" TO ''Asia/Tokyo''', pg_catalog.current_database());"
        ), "{text}");
        assert!(text.contains("SET \"search_path\" TO ''$user'', ''public'', ''odd, schema''"), "{text}");
        assert!(text.contains("ALTER ROLE \"app\" IN DATABASE %I SET \"work_mem\" TO ''8MB''"), "{text}");
        assert!(text.contains("COMMENT ON DATABASE %I IS ''it''''s 100%% ours''"), "{text}");
        assert!(text.contains("REVOKE ALL ON DATABASE %I FROM PUBLIC"), "{text}");
        assert!(text.contains("GRANT TEMPORARY ON DATABASE %I TO PUBLIC'"), "{text}");
        assert!(text.contains("GRANT CONNECT ON DATABASE %I TO \"reporting\" WITH GRANT OPTION"), "{text}");
        assert_eq!(text.matches("EXCEPTION WHEN OTHERS THEN RAISE WARNING").count(), 7);
        let locale = parse_locale(&text).unwrap();
        assert_eq!(locale.provider, "icu");
        assert_eq!(
            locale.create_options(15),
            " ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' LOCALE_PROVIDER icu ICU_LOCALE 'und'"
        );
        assert_eq!(locale.create_options(14), " ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C'");
        assert_eq!(parse_owner(&text).as_deref(), Some("app"));
    }

    #[test]
    fn a_default_database_renders_no_statements() {
        let c = Captured { encoding: "UTF8".into(), provider: "c".into(), default_acl: true, ..Default::default() };
        let text = render(&c);
        assert!(!text.contains("DO "), "{text}");
        assert_eq!(parse_locale(&text).unwrap().provider, "libc");
        assert_eq!(parse_owner(&text), None, "no owner recorded: the admin keeps it");
    }

    #[test]
    fn metadata_comes_from_the_leading_comments_only() {
        let mut c = Captured { encoding: "UTF8".into(), provider: "c".into(), default_acl: true, ..Default::default() };
        c.comment = Some("line one\n-- owner: postgres\n-- encoding: SQL_ASCII".into());
        // A hand-made section without the owner line: the comment's line must not stand in.
        let text = format!("--\n\n{}", render(&c).replacen("\n-- owner: \n", "\n", 1));
        assert!(text.contains("\n-- owner: postgres\n"), "the comment spans lines: {text}");
        assert_eq!(parse_owner(&text), None);
        assert_eq!(parse_locale(&text).unwrap().encoding, "UTF8");
    }

    #[test]
    fn dollar_tags_never_collide() {
        let mut c = captured();
        c.comment = Some("$bc$ and $bc1$".into());
        let text = render(&c);
        assert!(text.contains("DO $bc2$"), "{text}");
    }

    #[test]
    fn guc_lists_split_like_postgres() {
        assert_eq!(split_guc_list("\"$user\", public"), ["$user", "public"]);
        assert_eq!(split_guc_list("a,\"b\"\"c\" , d e"), ["a", "b\"c", "d e"]);
        assert_eq!(split_guc_list(""), Vec::<String>::new());
        assert_eq!(split_guc_list("\"\""), [""]);
    }
}
