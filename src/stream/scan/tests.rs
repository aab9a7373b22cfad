use super::mariadb::MariaScanner;
use super::postgres::{PgScanner, parse_qualified};
use super::*;

const ROLES: &str = "--\n-- PostgreSQL database cluster dump\n--\n\n\\restrict abc\n\nSET default_transaction_read_only = off;\n\nCREATE ROLE app;\nALTER ROLE app WITH LOGIN;\n\n\\unrestrict abc\n\n--\n-- PostgreSQL database cluster dump complete\n--\n\n";

/// The shape of pg_dump 15.18 output (with `\restrict`), with the traps the scanner must see
/// through: a trailer line inside a function body and inside a COPY row, a `$1` parameter, an
/// `E'...\''` string, quoted and non-ASCII names, a multi-line string literal.
fn dump() -> String {
    [
        "--\n-- PostgreSQL database dump\n--\n\n\\restrict KEY123\n\n",
        "SET statement_timeout = 0;\nSET standard_conforming_strings = on;\n",
        "SELECT pg_catalog.set_config('search_path', '', false);\n\n",
        "--\n-- Name: f(); Type: FUNCTION; Schema: public; Owner: app\n--\n\n",
        "CREATE FUNCTION public.f(integer) RETURNS integer\n    LANGUAGE plpgsql\n    AS $_$ begin\n",
        "-- PostgreSQL database dump complete\nreturn $1; end $_$;\n\n",
        "--\n-- Name: t; Type: TABLE; Schema: public; Owner: app\n--\n\n",
        "CREATE TABLE public.t (\n    id integer,\n    v text DEFAULT E'it\\'s'\n);\n\n",
        "COMMENT ON TABLE public.t IS 'two\n-- PostgreSQL database dump complete\nlines';\n\n",
        "--\n-- Name: Tåble; Type: TABLE; Schema: Sch ema; Owner: app\n--\n\n",
        "CREATE TABLE \"Sch ema\".\"Tåble\" (\"x\"\"y\" text);\n\n",
        "--\n-- Data for Name: t; Type: TABLE DATA; Schema: public; Owner: app\n--\n\n",
        "COPY public.t (id, v) FROM stdin;\n1\ta\n2\t-- PostgreSQL database dump complete\n3\tc\\nd\n\\.\n\n\n",
        "COPY \"Sch ema\".\"Tåble\" (\"x\"\"y\") FROM stdin;\n\\.\n\n\n",
        "--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict KEY123\n\n",
    ]
    .concat()
}

fn scan_pg(text: &str) -> Summary {
    let mut s = PgScanner::new();
    s.feed(text.as_bytes());
    s.finish()
}

/// The same text fed one byte at a time and in odd chunk sizes gives the same summary.
fn scan_pg_chunked(text: &str, size: usize) -> Summary {
    let mut s = PgScanner::new();
    for c in text.as_bytes().chunks(size) {
        s.feed(c);
    }
    s.finish()
}

#[test]
fn complete_dump_with_roles_counts_rows_and_objects() {
    let text = format!("{ROLES}{}", dump());
    let s = scan_pg(&text);
    assert_eq!(s.completeness, Completeness::Complete, "{s:?}");
    let names: Vec<(String, u64)> = s.tables.iter().map(|t| (t.qualified(), t.rows)).collect();
    assert_eq!(names, [("public.t".to_string(), 3), ("Sch ema.Tåble".to_string(), 0)]);
    assert_eq!(s.tables[0].bytes, "1\ta\n2\t-- PostgreSQL database dump complete\n3\tc\\nd\n".len() as u64);
    assert_eq!(s.objects.get("TABLE"), Some(&2));
    assert_eq!(s.objects.get("FUNCTION"), Some(&1));
    assert_eq!(s.objects.get("TABLE DATA"), Some(&1));
    assert!(s.rows_known);
    assert_eq!(s.bytes, text.len() as u64);
    assert_eq!(s.lines, text.matches('\n').count() as u64);
    for size in [1, 2, 3, 7, 64, 4096] {
        assert_eq!(scan_pg_chunked(&text, size), s, "chunk size {size}");
    }
}

#[test]
fn the_upstream_table_of_broken_files() {
    assert_eq!(scan_pg("").check_complete(), Err(Incomplete::Empty));
    assert_eq!(scan_pg("\n\n  \n").check_complete(), Err(Incomplete::Empty));
    assert_eq!(scan_pg(ROLES).check_complete(), Err(Incomplete::RolesOnly));
    assert!(matches!(scan_pg("hello world\nthis is not SQL\n").check_complete(), Err(Incomplete::NotADump { .. })));
    let full = format!("{ROLES}{}", dump());
    // Cut between two statements, before the COPY of public.t.
    let at = full.find("COPY public.t").unwrap();
    let err = scan_pg(&full[..at]).check_complete().unwrap_err();
    assert!(matches!(err, Incomplete::Cut { .. }), "{err:?}");
    assert!(err.to_string().contains("between two statements"), "{err}");
    // Cut inside the COPY block, right after the row whose text is the trailer line.
    let at = full.find("3\tc").unwrap();
    let err = scan_pg(&full[..at]).check_complete().unwrap_err();
    assert!(err.to_string().contains("inside the data of table public.t after 2 rows"), "{err}");
    // Cut inside the function body, right after its trailer-like line.
    let at = full.find("return $1").unwrap();
    let err = scan_pg(&full[..at]).check_complete().unwrap_err();
    assert!(err.to_string().contains("function body"), "{err}");
    // Cut inside the multi-line comment literal.
    let at = full.find("lines';").unwrap();
    assert!(scan_pg(&full[..at]).check_complete().is_err());
    // The roles section cut short.
    let at = ROLES.find("ALTER ROLE").unwrap();
    assert_eq!(scan_pg(&ROLES[..at]).check_complete(), Err(Incomplete::RolesCut));
}

#[test]
fn every_cut_of_a_dump_is_incomplete() {
    let full = format!("{ROLES}{}", dump());
    let end = full.rfind("-- PostgreSQL database dump complete").unwrap();
    for cut in 0..end {
        if !full.is_char_boundary(cut) {
            continue;
        }
        let s = scan_pg(&full[..cut]);
        assert!(s.check_complete().is_err(), "a dump cut at byte {cut} was taken as complete: {:?}", &full[..cut]);
    }
}

#[test]
fn what_may_follow_the_trailer() {
    let text = format!("{}\n--\n\n", dump());
    assert_eq!(scan_pg(&text).completeness, Completeness::Complete);
    let text = format!("{}DROP TABLE public.t;\n", dump());
    assert!(matches!(scan_pg(&text).check_complete(), Err(Incomplete::AfterTrailer { .. })));
    // No trailing newline after \unrestrict.
    let text = dump().trim_end().to_string();
    assert_eq!(scan_pg(&text).completeness, Completeness::Complete);
}

#[test]
fn our_settings_section_must_be_whole() {
    let section = format!("--\n{SETTINGS_HEADER}\n--\nDO $bc$ BEGIN NULL; END $bc$;\n--\n{SETTINGS_FOOTER}\n--\n\n");
    let text = format!("{ROLES}{section}{}", dump());
    assert_eq!(scan_pg(&text).completeness, Completeness::Complete);
    let cut = format!("{ROLES}{}", &section[..section.find("DO").unwrap()]);
    assert!(scan_pg(&cut).check_complete().is_err());
    let text = format!("{ROLES}{}{}", &section[..section.find(SETTINGS_FOOTER).unwrap()], dump());
    assert_eq!(scan_pg(&text).check_complete(), Err(Incomplete::SettingsCut));
}

#[test]
fn insert_dumps_have_unknown_rows() {
    let text = dump().replace(
        "COPY public.t (id, v) FROM stdin;\n1\ta\n2\t-- PostgreSQL database dump complete\n3\tc\\nd\n\\.\n",
        "INSERT INTO public.t VALUES (1, 'a');\n",
    );
    let s = scan_pg(&text);
    assert_eq!(s.completeness, Completeness::Complete);
    assert!(!s.rows_known);
    assert_eq!(s.to_string(), format!("1 tables with data, unknown rows, {} lines", s.lines));
}

#[test]
fn qualified_names() {
    assert_eq!(parse_qualified("public.t (a) FROM stdin"), ("public".into(), "t".into()));
    assert_eq!(parse_qualified("\"a.b\".\"c\"\"d\" FROM stdin"), ("a.b".into(), "c\"d".into()));
    assert_eq!(parse_qualified("t FROM stdin"), ("".into(), "t".into()));
}

#[test]
fn no_input_panics_the_scanners() {
    // Every byte value at every state boundary of a real dump.
    let base = format!("{ROLES}{}", dump());
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..300 {
        let mut bytes = base.clone().into_bytes();
        for _ in 0..8 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let at = (seed as usize) % bytes.len();
            bytes[at] = (seed >> 32) as u8;
        }
        let mut pg = PgScanner::new();
        pg.feed(&bytes);
        let _ = pg.finish();
        let mut my = MariaScanner::new();
        my.feed(&bytes);
        let _ = my.finish();
    }
}

const MARIA: &str = "/*M!999999\\- enable the sandbox mode */ \n-- MariaDB dump 10.19  Distrib 10.11.19-MariaDB\n--\n-- Host: localhost    Database: shop\n\n/*!40101 SET NAMES utf8mb4 */;\n\n--\n-- Table structure for table `t`\n--\n\nDROP TABLE IF EXISTS `t`;\nCREATE TABLE `t` (\n  `id` int(11) DEFAULT NULL,\n  `v` text DEFAULT NULL\n) ENGINE=InnoDB;\n\n--\n-- Dumping data for table `t`\n--\n\nLOCK TABLES `t` WRITE;\nINSERT INTO `t` VALUES\n(1,'a\\nb (x'),\n(2,'c\\'); -- Dump completed'),\n(3,NULL);\nINSERT INTO `t` VALUES (4,'d');\nUNLOCK TABLES;\n\n--\n-- Dumping data for table `empty`\n--\n\nDELIMITER ;;\nCREATE PROCEDURE `p`()\nBEGIN\n-- Dump completed\nSELECT 1;\nEND ;;\nDELIMITER ;\n/*!40111 SET SQL_NOTES=@OLD_SQL_NOTES */;\n\n-- Dump completed on 2026-12-01 20:58:44\n";

fn scan_maria(text: &str) -> Summary {
    let mut s = MariaScanner::new();
    s.feed(text.as_bytes());
    s.finish()
}

#[test]
fn mariadb_dump_complete_and_counted() {
    let s = scan_maria(MARIA);
    assert_eq!(s.completeness, Completeness::Complete, "{s:?}");
    let rows: Vec<(String, u64)> = s.tables.iter().map(|t| (t.table.clone(), t.rows)).collect();
    assert_eq!(rows, [("t".to_string(), 4), ("empty".to_string(), 0)]);
    for size in [1, 5, 33] {
        let mut c = MariaScanner::new();
        for chunk in MARIA.as_bytes().chunks(size) {
            c.feed(chunk);
        }
        assert_eq!(c.finish(), s, "chunk size {size}");
    }
    let complete_insert = MARIA.replace("INSERT INTO `t` VALUES (4", "INSERT INTO `t` (`id`, `v`) VALUES (4");
    assert_eq!(scan_maria(&complete_insert).tables[0].rows, 4);
}

#[test]
fn mariadb_cuts_are_incomplete() {
    let end = MARIA.rfind("-- Dump completed on").unwrap();
    for cut in 0..end {
        assert!(scan_maria(&MARIA[..cut]).check_complete().is_err(), "cut at {cut}: {:?}", &MARIA[..cut]);
    }
    assert!(matches!(scan_maria("").check_complete(), Err(Incomplete::Empty)));
    assert!(matches!(scan_maria("SELECT 1;\n").check_complete(), Err(Incomplete::NotADump { .. })));
}
