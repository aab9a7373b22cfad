//! The splitter against a recording set of lanes: what each session would be sent, in order.

use super::lanes::{Lanes, Piece};
use super::split::{SPLIT_BYTES, Splitter, Truncate};
use crate::stream::scan::postgres::PgScanner;

#[derive(Default)]
struct Recorder {
    workers: usize,
    /// Per lane: the sessions it ran (a barrier ends one), each the text it got.
    sessions: Vec<Vec<String>>,
    open: Vec<bool>,
    /// Every send: (lane, file line).
    lines: Vec<(usize, Option<u64>)>,
    /// Every piece: (lane, kind, text).
    pieces: Vec<(usize, &'static str, String)>,
    barriers: usize,
    next: usize,
    /// What `has_room` answers (lanes that queue or spill without waiting).
    room: bool,
    /// Whether `after` is supported; per lane, the units ended there.
    waits: bool,
    units: Vec<u64>,
    /// What `data_sent` was told.
    data_sent: Option<Vec<super::lanes::TableLoad>>,
    replies_exact: bool,
    /// Every `weigh_build`: the lane and the pieces its build reads.
    weighed: Vec<(usize, Vec<(usize, u64)>)>,
}

impl Recorder {
    fn new(workers: usize) -> Self {
        Recorder {
            workers,
            sessions: vec![Vec::new(); workers + 1],
            open: vec![false; workers + 1],
            units: vec![0; workers + 1],
            ..Default::default()
        }
    }

    fn all(&self, lane: usize) -> String {
        self.sessions[lane].concat()
    }
}

impl Lanes for Recorder {
    fn workers(&self) -> usize {
        self.workers
    }
    fn send(&mut self, lane: usize, piece: Piece<'_>, file_line: Option<u64>) -> anyhow::Result<()> {
        let text = piece.text();
        let kind = match piece {
            Piece::Statement(_) => "statement",
            Piece::Rows(_) => "rows",
            Piece::CopyEnd => "end",
            Piece::Meta(_) => "meta",
        };
        self.pieces.push((lane, kind, String::from_utf8_lossy(text).into_owned()));
        if !self.open[lane] {
            self.sessions[lane].push(String::new());
            self.open[lane] = true;
        }
        self.sessions[lane].last_mut().unwrap().push_str(&String::from_utf8_lossy(text));
        self.lines.push((lane, file_line));
        Ok(())
    }
    fn end_unit(&mut self, lane: usize) -> anyhow::Result<()> {
        self.next += 1;
        self.units[lane] += 1;
        self.pieces.push((lane, "unit", self.units[lane].to_string()));
        self.send(lane, Piece::Statement(b"<unit>\n"), None)
    }
    fn has_room(&self, _lane: usize) -> bool {
        self.room
    }
    fn data_sent(&mut self, tables: &[super::lanes::TableLoad], replies_exact: bool) {
        assert!(self.data_sent.is_none(), "said once");
        self.data_sent = Some(tables.to_vec());
        self.replies_exact = replies_exact;
    }
    fn weigh_build(&mut self, lane: usize, pieces: &[(usize, u64)]) {
        self.weighed.push((lane, pieces.to_vec()));
    }
    fn after(&mut self, lane: usize, other: usize, unit: u64) -> anyhow::Result<bool> {
        if self.waits {
            self.pieces.push((lane, "after", format!("{other}:{unit}")));
        }
        Ok(self.waits)
    }
    fn idlest(&self) -> usize {
        // Round robin over the workers (the next after each unit): deterministic.
        if self.workers == 0 { 0 } else { 1 + self.next % self.workers }
    }
    fn barrier(&mut self) -> anyhow::Result<()> {
        self.barriers += 1;
        self.pieces.push((0, "barrier", String::new()));
        self.next += 1;
        self.open.iter_mut().for_each(|o| *o = false);
        Ok(())
    }
}

/// A dump laid out as pg_dump 15 writes it.
fn dump(rows_a: usize) -> String {
    let mut d = String::from(
        "--\n-- PostgreSQL database dump\n--\n\n\\restrict KEY123\n\n\
         SET statement_timeout = 0;\nSET client_encoding = 'UTF8';\n\
         SELECT pg_catalog.set_config('search_path', '', false);\n\n\
         --\n-- Name: f(); Type: FUNCTION; Schema: public; Owner: app\n--\n\n\
         CREATE FUNCTION public.f() RETURNS text LANGUAGE sql AS $$SELECT ';\n-- Name: x; Type: INDEX'$$;\n\n\
         SET default_tablespace = '';\n\n\
         --\n-- Name: a; Type: TABLE; Schema: public; Owner: app\n--\n\nCREATE TABLE public.a (id int);\n\n\
         --\n-- Name: b; Type: TABLE; Schema: public; Owner: app\n--\n\nCREATE TABLE public.b (id int);\n\n\
         --\n-- Data for Name: a; Type: TABLE DATA; Schema: public; Owner: app\n--\n\nCOPY public.a (id) FROM stdin;\n",
    );
    for i in 0..rows_a {
        d.push_str(&format!("{i}\t{}\n", "x".repeat(90)));
    }
    d.push_str(
        "\\.\n\n\n--\n-- Data for Name: b; Type: TABLE DATA; Schema: public; Owner: app\n--\n\n\
         COPY public.b (id) FROM stdin;\n1\n\\.\n\n\n\
         --\n-- Name: s; Type: SEQUENCE SET; Schema: public; Owner: app\n--\n\nSELECT pg_catalog.setval('public.s', 42, true);\n\n\
         --\n-- Name: a a_pkey; Type: CONSTRAINT; Schema: public; Owner: app\n--\n\nALTER TABLE ONLY public.a\n    ADD CONSTRAINT a_pkey PRIMARY KEY (id);\n\n\
         --\n-- Name: INDEX a_pkey; Type: COMMENT; Schema: public; Owner: app\n--\n\nCOMMENT ON INDEX public.a_pkey IS 'k';\n\n\
         SET default_tablespace = fast;\n\n\
         --\n-- Name: b_i; Type: INDEX; Schema: public; Owner: app\n--\n\nCREATE INDEX b_i ON public.b USING btree (id);\n\n\
         --\n-- Name: p_i_c; Type: INDEX ATTACH; Schema: public; Owner: app\n--\n\nALTER INDEX public.p_i ATTACH PARTITION public.c_i;\n\n\
         --\n-- Name: b b_fk; Type: FK CONSTRAINT; Schema: public; Owner: app\n--\n\nALTER TABLE ONLY public.b\n    ADD CONSTRAINT b_fk FOREIGN KEY (id) REFERENCES public.a(id);\n\n\
         --\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict KEY123\n\n",
    );
    d
}

fn split(text: &str, workers: usize) -> (Recorder, super::Plan, crate::stream::scan::Summary) {
    split_with(text, workers, Truncate::Off)
}

fn split_with(text: &str, workers: usize, truncate: Truncate) -> (Recorder, super::Plan, crate::stream::scan::Summary) {
    split_reading(text, workers, truncate, 4096)
}

/// `split_with`, reading the text `read` bytes at a time.
fn split_reading(
    text: &str,
    workers: usize,
    truncate: Truncate,
    read: usize,
) -> (Recorder, super::Plan, crate::stream::scan::Summary) {
    let mut lanes = Recorder::new(workers);
    let splitter = Splitter::new(&mut lanes, PgScanner::new(), 0, truncate).unwrap();
    let (summary, plan) = splitter.run(&mut std::io::BufReader::with_capacity(read, text.as_bytes())).unwrap();
    (lanes, plan, summary)
}

/// The statements sent, in order, as text.
fn statements(lanes: &Recorder) -> Vec<&str> {
    lanes.pieces.iter().filter(|(_, kind, _)| *kind == "statement").map(|(_, _, t)| t.as_str()).collect()
}

#[test]
fn the_end_of_copy_data_is_never_sent_as_a_row_however_the_reads_cut_it() {
    for read in [1, 2, 3, 5, 4096] {
        for workers in [0, 2] {
            let (lanes, _, summary) = split_reading(&dump(40), workers, Truncate::Off, read);
            summary.check_complete().unwrap();
            let rows: String =
                lanes.pieces.iter().filter(|(_, k, _)| *k == "rows").map(|(_, _, t)| t.as_str()).collect();
            assert_eq!(rows.lines().count(), 41, "read {read}, workers {workers}: every row and only rows");
            assert!(!rows.lines().any(|l| l.starts_with('\\')), "read {read}: {rows:?}");
            let ends = lanes.pieces.iter().filter(|(_, k, _)| *k == "end").count();
            assert_eq!(ends, 2, "read {read}, workers {workers}: one end per COPY");
        }
    }
}

#[test]
fn a_line_of_several_statements_is_sent_as_one_statement_each() {
    let text = dump(1).replace(
        "SET default_tablespace = '';\n",
        "SET default_tablespace = ''; SELECT 1/0; CREATE TABLE public.kept (a int); -- a note\n",
    );
    let (lanes, _, _) = split(&text, 0);
    let sent = statements(&lanes);
    assert!(sent.contains(&" SELECT 1/0;"), "{sent:?}");
    assert!(sent.contains(&" CREATE TABLE public.kept (a int); -- a note\n"), "{sent:?}");
    assert!(sent.iter().any(|s| s.trim() == "SET default_tablespace = '';"), "{sent:?}");
}

#[test]
fn strings_follow_standard_conforming_strings_off() {
    // With the setting off, `\'` does not end a string: the `;` after it is inside.
    let text = dump(1).replace(
        "SET default_tablespace = '';\n",
        "SET standard_conforming_strings = off;\nCOMMENT ON TABLE public.a IS 'it\\'s; fine';\nSET standard_conforming_strings = on;\nCOMMENT ON TABLE public.b IS 'c:\\';\n",
    );
    let (lanes, plan, summary) = split(&text, 0);
    summary.check_complete().unwrap();
    assert_eq!(plan.serial_from, None, "{plan}");
    let sent = statements(&lanes);
    assert!(sent.contains(&"COMMENT ON TABLE public.a IS 'it\\'s; fine';\n"), "{sent:?}");
    assert!(sent.contains(&"COMMENT ON TABLE public.b IS 'c:\\';\n"), "back on: a backslash is a character: {sent:?}");
}

#[test]
fn sections_go_where_they_may_and_in_an_order_that_is_always_valid() {
    let (lanes, plan, summary) = split(&dump(3), 2);
    summary.check_complete().unwrap();
    assert_eq!(summary.tables.iter().map(|t| t.rows).collect::<Vec<_>>(), [3, 1]);
    assert_eq!((plan.tables, plan.builds, plan.foreign_keys, plan.serial_from.clone()), (2, 2, 1, None), "{plan}");
    let serial = &lanes.sessions[0];
    // Pre-data, then the data phase's sequence value, then attach, then the rest.
    assert!(serial[0].contains("CREATE FUNCTION") && serial[0].contains("CREATE TABLE public.b"), "{serial:?}");
    assert!(!serial[0].contains("COPY"), "rows never go to the serial session: {serial:?}");
    assert!(serial[1].contains("setval"), "{serial:?}");
    let attach = serial.iter().position(|s| s.contains("ATTACH PARTITION")).unwrap();
    let comment = serial.iter().position(|s| s.contains("COMMENT ON INDEX")).unwrap();
    assert!(attach < comment, "{serial:?}");
    // Every session starts with the dump's \restrict key and the settings in force.
    for lane in 0..=2 {
        for session in &lanes.sessions[lane] {
            assert!(session.starts_with("\\restrict KEY123\n"), "lane {lane}: {session}");
            assert!(session.contains("set_config('search_path', '', false)"), "lane {lane}: {session}");
        }
    }
    let workers = format!("{}{}", lanes.all(1), lanes.all(2));
    assert!(workers.contains("COPY public.a (id) FROM stdin;\n0\t") && workers.contains("COPY public.b"), "{workers}");
    // The index in tablespace `fast` is built with that setting; the key before it without.
    let b_i = workers.find("CREATE INDEX b_i").unwrap();
    assert!(workers[..b_i].rfind("SET default_tablespace = fast;").is_some(), "{workers}");
    let pkey_lane = if lanes.all(1).contains("a_pkey") { 1 } else { 2 };
    let pkey_text = lanes.all(pkey_lane);
    let pkey = pkey_text.find("ADD CONSTRAINT a_pkey").unwrap();
    assert!(
        pkey_text[..pkey].rfind("SET default_tablespace = '';").unwrap_or(0)
            >= pkey_text[..pkey].rfind("fast").unwrap_or(0)
    );
    assert!(!workers.contains("unrestrict") && !workers.contains("database dump complete"));
    // A function body holding `;` and a header-like line is one statement of pre-data.
    assert!(serial[0].contains("$$SELECT ';\n-- Name: x; Type: INDEX'$$;"));
}

#[test]
fn a_big_table_is_cut_between_rows_over_the_workers() {
    let rows = (SPLIT_BYTES as usize / 90) * 3;
    let (lanes, plan, summary) = split(&dump(rows), 3);
    summary.check_complete().unwrap();
    assert!(plan.pieces >= 2, "{plan}");
    let mut copied = 0usize;
    for lane in 1..=3 {
        let text = lanes.all(lane);
        assert!(text.contains("COPY public.a (id) FROM stdin;"), "lane {lane} got a piece");
        // Each piece is a whole COPY: every started block ends with \. before anything else.
        let mut in_copy = false;
        for l in text.lines() {
            if l.starts_with("COPY ") {
                assert!(!in_copy);
                in_copy = true;
            } else if l == "\\." {
                in_copy = false;
            } else if in_copy && l.contains("\txxx") {
                copied += 1;
            } else {
                assert!(!in_copy || l == "1", "{l}");
            }
        }
        assert!(!in_copy);
    }
    assert_eq!(copied, rows, "every row sent exactly once");
}

#[test]
fn a_lane_with_room_takes_a_big_table_whole_in_big_pieces() {
    let rows = (SPLIT_BYTES as usize / 90) * 3;
    let mut lanes = Recorder::new(2);
    lanes.room = true;
    let text = dump(rows);
    let splitter = Splitter::new(&mut lanes, PgScanner::new(), 0, Truncate::Off).unwrap();
    let (summary, plan) = splitter.run(&mut std::io::BufReader::with_capacity(1 << 20, text.as_bytes())).unwrap();
    summary.check_complete().unwrap();
    assert_eq!(plan.pieces, 0, "{plan}");
    let rows_sent: Vec<usize> = lanes.pieces.iter().filter(|p| p.1 == "rows").map(|p| p.2.len()).collect();
    let total: usize = rows_sent.iter().sum();
    // Pieces of rows are cut at SEND_BYTES or at the end of a read, never row by row.
    assert!(rows_sent.len() <= 2 * total / (256 * 1024) + 4, "{} pieces for {total} bytes", rows_sent.len());
    assert_eq!(lanes.all(1).matches("COPY public.a ").count() + lanes.all(2).matches("COPY public.a ").count(), 1);
}

#[test]
fn file_lines_follow_every_piece() {
    let text = dump(5);
    let (lanes, _, _) = split(&text, 2);
    let copy_line = text.lines().position(|l| l.starts_with("COPY public.a")).unwrap() as u64 + 1;
    assert!(lanes.lines.iter().any(|&(lane, l)| lane > 0 && l == Some(copy_line)), "{:?}", lanes.lines);
}

#[test]
fn an_unknown_meta_command_makes_the_rest_serial() {
    let text = dump(2).replace("--\n-- Name: a a_pkey;", "\\! touch /tmp/should-not-run\n\n--\n-- Name: a a_pkey;");
    let (lanes, plan, summary) = split(&text, 2);
    summary.check_complete().unwrap();
    let (line, why) = plan.serial_from.clone().expect("fell back");
    assert!(why.contains("\\!") && line > 1, "{plan}");
    let serial = lanes.all(0);
    // The command and everything after it go to the serial session, which holds the key.
    let bang = serial.find("\\! touch").unwrap();
    assert!(serial[..bang].rfind("\\restrict KEY123").is_some());
    assert!(serial[bang..].contains("a_pkey") && serial[bang..].contains("b_fk"));
}

#[test]
fn a_file_without_object_headers_runs_in_one_session() {
    let text = "CREATE TABLE t (a int);\nCOPY t (a) FROM stdin;\n1\n\\.\nSELECT 1;\n";
    let (lanes, plan, _) = split(text, 2);
    assert_eq!(plan.tables, 0);
    assert_eq!(lanes.all(0), text);
    assert!(lanes.sessions[1].is_empty() && lanes.sessions[2].is_empty());
}

/// Runs the splitter over `text` with lanes that can wait on each other.
fn split_waiting(text: &str, workers: usize) -> (Recorder, super::Plan) {
    let mut lanes = Recorder::new(workers);
    lanes.waits = true;
    let splitter = Splitter::new(&mut lanes, PgScanner::new(), 0, Truncate::Off).unwrap();
    let (summary, plan) = splitter.run(&mut std::io::BufReader::new(text.as_bytes())).unwrap();
    summary.check_complete().unwrap();
    (lanes, plan)
}

/// Whether the build at `pieces[at]` runs after every piece of `table`'s rows: in the same
/// lane after that piece's unit, or after waiting for that unit of the other lane.
fn runs_after_rows(pieces: &[(usize, &'static str, String)], at: usize, table: &str) -> bool {
    let lane = pieces[at].0;
    let copy = format!("COPY {table} ");
    let mut ok = true;
    let mut copying = None;
    for (i, (l, kind, text)) in pieces.iter().enumerate() {
        match *kind {
            "statement" if text.starts_with(&copy) => copying = Some(*l),
            "unit" if copying == Some(*l) => {
                copying = None;
                let waited =
                    pieces[..at].iter().any(|(w, k, t)| *w == lane && *k == "after" && *t == format!("{l}:{text}"));
                ok &= i < at && (*l == lane || waited);
            }
            _ => {}
        }
    }
    ok
}

fn barriers_before(lanes: &Recorder, at: usize) -> usize {
    lanes.pieces[..at].iter().filter(|(_, k, _)| *k == "barrier").count()
}

#[test]
fn a_build_waits_only_for_the_lanes_that_loaded_its_table() {
    for rows in [3, 100_000] {
        let (lanes, plan) = split_waiting(&dump(rows), 2);
        assert_eq!(plan.serial_from, None, "{plan}");
        let at = |what: &str| lanes.pieces.iter().position(|(_, k, t)| *k == "statement" && t.contains(what)).unwrap();
        let (a, b) = (at("ADD CONSTRAINT a_pkey"), at("CREATE INDEX b_i"));
        assert!(runs_after_rows(&lanes.pieces, a, "public.a"), "{rows} rows: {:#?}", lanes.pieces);
        assert!(runs_after_rows(&lanes.pieces, b, "public.b"), "{rows} rows: {:#?}", lanes.pieces);
        assert_eq!(barriers_before(&lanes, a.min(b)), 1, "only pre-data's: {:#?}", lanes.pieces);
        if rows > 3 {
            assert!(plan.pieces > 0, "the big table was cut: {plan}");
            let waits = lanes.pieces.iter().filter(|(_, k, _)| *k == "after").count();
            assert!(waits > 0, "a table in pieces over two lanes is waited for: {:#?}", lanes.pieces);
        }
        // The foreign key still runs after everything (a barrier), after both builds.
        assert!(at("b_fk FOREIGN KEY") > a.max(b));
        // Each build weighs, on its lane, the pieces that loaded its table.
        let loads = lanes.data_sent.clone().unwrap();
        let of = |t: &str| loads.iter().find(|(n, _)| n == t.as_bytes()).map(|(_, p)| p.clone()).unwrap();
        for (build, table) in [(a, "public.a"), (b, "public.b")] {
            let weighed = (lanes.pieces[build].0, of(table));
            assert!(lanes.weighed.contains(&weighed), "{weighed:?} in {:?}", lanes.weighed);
        }
    }
}

#[test]
fn rows_not_known_by_their_table_make_the_builds_wait_for_every_session() {
    let text = dump(3).replace("COPY public.b (id) FROM stdin;\n1\n\\.\n", "INSERT INTO public.b VALUES (1);\n");
    assert!(text.contains("INSERT INTO public.b"));
    let (lanes, plan) = split_waiting(&text, 2);
    assert_eq!(plan.serial_from, None, "{plan}");
    let first_build = lanes.pieces.iter().position(|(_, _, t)| t.contains("a_pkey")).unwrap();
    assert_eq!(barriers_before(&lanes, first_build), 2, "pre-data's and the data's: {:#?}", lanes.pieces);
    assert!(!lanes.pieces.iter().any(|(_, k, _)| *k == "after"), "{:#?}", lanes.pieces);
}

#[test]
fn the_tables_and_their_lanes_are_told_once_the_data_is_sent_and_rows_stay_final() {
    let (lanes, plan) = split_waiting(&dump(100_000), 2);
    assert!(plan.rows_final_after_data, "{plan:?}");
    assert!(lanes.replies_exact, "what pg_dump writes before the data leaves the COPY replies exact");
    let sent = lanes.data_sent.clone().expect("told");
    let names: Vec<String> = sent.iter().map(|(t, _)| String::from_utf8_lossy(t).into_owned()).collect();
    assert_eq!(names, ["public.a", "public.b"]);
    // Each piece named is a unit its lane ended after that table's rows: the same pieces the
    // builds wait for.
    let (_, a_pieces) = &sent[0];
    assert!(a_pieces.len() > 1, "the big table went in pieces: {a_pieces:?}");
    for &(lane, unit) in a_pieces {
        assert!(lanes.pieces.iter().any(|(l, k, t)| *l == lane && *k == "unit" && *t == unit.to_string()));
    }
    // The told moment is before any post-data statement.
    let build = lanes.pieces.iter().position(|(_, _, t)| t.contains("a_pkey")).unwrap();
    assert!(lanes.pieces[..build].iter().any(|(_, k, _)| *k == "unit"));

    // A trigger before the data: told, but the tables are counted, not taken from the replies.
    let text = dump(3).replace(
        "CREATE TABLE public.b (id int);",
        "CREATE TABLE public.b (id int);\n\nCREATE TRIGGER t BEFORE INSERT ON public.a FOR EACH ROW EXECUTE FUNCTION public.f();",
    );
    let (lanes, plan) = split_waiting(&text, 2);
    assert!(lanes.data_sent.is_some() && !lanes.replies_exact && plan.rows_final_after_data, "{plan:?}");

    // A statement in post-data that may change rows: the counts wait for the end.
    let text = dump(3).replace(
        "COMMENT ON INDEX public.a_pkey IS 'k';",
        "COMMENT ON INDEX public.a_pkey IS 'k';\nDELETE FROM public.a;",
    );
    let (_, plan) = split_waiting(&text, 2);
    assert!(!plan.rows_final_after_data, "{plan:?}");
    // Rows as INSERTs: not told at all.
    let text = dump(3).replace("COPY public.b (id) FROM stdin;\n1\n\\.\n", "INSERT INTO public.b VALUES (1);\n");
    let (lanes, plan) = split_waiting(&text, 2);
    assert!(lanes.data_sent.is_none() && !plan.rows_final_after_data, "{plan:?}");
    // A meta-command after the data makes the rest serial: not final either.
    let text =
        dump(3).replace("COMMENT ON INDEX public.a_pkey IS 'k';", "\\echo hi\nCOMMENT ON INDEX public.a_pkey IS 'k';");
    let (_, plan) = split_waiting(&text, 2);
    assert!(plan.serial_from.is_some() && !plan.rows_final_after_data, "{plan:?}");
}

mod fresh;
