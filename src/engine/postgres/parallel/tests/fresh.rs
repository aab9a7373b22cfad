//! Tables loaded in the transaction that truncates them (`split::fresh`): which, and how.

use super::*;

#[test]
fn throwaway_loads_truncate_each_table_in_the_copy_transaction_and_do_not_cut_it() {
    let rows = (SPLIT_BYTES as usize / 90) * 2;
    // Past `FRESH_BYTES` (1 MiB): worth truncating.
    let big = "7\n".repeat(1 << 20);
    let text =
        dump(rows).replace("CREATE TABLE public.b (id int);", "CREATE TABLE \"My b\".\"x y\" (id int);").replace(
            "COPY public.b (id) FROM stdin;\n1\n\\.\n",
            &format!(
                "COPY \"My b\".\"x y\" (id) FROM stdin;\n{big}\\.\n\nCOPY \"My b\".\"x y\" (id) FROM stdin;\n2\n\\.\n"
            ),
        );
    let (lanes, plan, summary) = split_with(&text, 2, Truncate::WholeTable);
    summary.check_complete().unwrap();
    assert_eq!(plan.pieces, 0, "{plan}");
    let workers = format!("{}{}", lanes.all(1), lanes.all(2));
    assert!(
        workers.contains("BEGIN;\nTRUNCATE ONLY public.a;\nCOPY public.a (id) FROM stdin WITH (FREEZE);\n"),
        "{workers}"
    );
    assert_eq!(workers.matches("TRUNCATE ONLY \"My b\".\"x y\";").count(), 1, "a second block never truncates");
    assert_eq!(workers.matches("FREEZE").count(), 2, "only a block in the truncating transaction is frozen");
    assert_eq!(workers.matches("COMMIT;").count(), 2);
    // The second block of the table goes to the lane of the first, after it.
    let lane = if lanes.all(1).contains("\"x y\"") { 1 } else { 2 };
    let text = lanes.all(lane);
    assert!(text.find("\n7\n\\.\nCOMMIT;").unwrap() < text.find("\n2\n\\.\n").unwrap(), "{text}");
}

#[test]
fn a_restore_truncates_the_big_tables_the_dump_made_and_commits_a_cut_table_with_its_first_piece() {
    let rows = (SPLIT_BYTES as usize / 90) * 3;
    let (lanes, plan, summary) = split_with(&dump(rows), 2, Truncate::FirstPiece);
    summary.check_complete().unwrap();
    assert!(plan.pieces >= 2, "public.a is cut: {plan}");
    let workers = format!("{}{}", lanes.all(1), lanes.all(2));
    assert_eq!(
        workers.matches("BEGIN;\nTRUNCATE ONLY public.a;\nCOPY public.a (id) FROM stdin WITH (FREEZE);\n").count(),
        1
    );
    assert_eq!(workers.matches("FREEZE").count(), 1, "only the first piece of the big table");
    assert!(!workers.contains("TRUNCATE ONLY public.b"), "a table of one row loads with a plain COPY: {workers}");
    assert!(workers.contains("COPY public.b (id) FROM stdin;\n1\n\\.\n"), "{workers}");
    assert_eq!(
        workers.matches("COPY public.a (id) FROM stdin;\n").count() as u64,
        plan.pieces,
        "every later piece is a plain COPY"
    );
    // The truncating transaction commits with the first piece: before any later piece's COPY.
    let sent = |p: &(usize, &str, String), kind: &str, text: &str| p.1 == kind && p.2 == text;
    let first_end = lanes.pieces.iter().position(|p| p.1 == "end").unwrap();
    assert!(sent(&lanes.pieces[first_end + 1], "statement", "COMMIT;\n"), "{:?}", &lanes.pieces[first_end + 1]);
    assert_eq!(lanes.pieces[first_end + 1].0, lanes.pieces[first_end].0, "on the first piece's lane");
    let next_copy = lanes.pieces.iter().position(|p| sent(p, "statement", "COPY public.a (id) FROM stdin;\n")).unwrap();
    assert!(first_end < next_copy);
    assert_eq!(workers.matches("COMMIT;").count(), 1, "one truncating transaction");
    // The deferred statement names the file line it names when sent at once, its rows theirs.
    let (plain, _, _) = split_with(&dump(rows), 2, Truncate::Off);
    let at = |lanes: &Recorder, text: &str| {
        // `lines` has one entry per send; `pieces` also records unit ends and barriers.
        let sends: Vec<_> =
            lanes.pieces.iter().filter(|p| p.1 != "unit" && p.1 != "barrier").zip(&lanes.lines).collect();
        let i = sends.iter().position(|(p, _)| p.2.starts_with(text)).unwrap();
        (sends[i].1.1, sends[i + 1].1.1)
    };
    assert_eq!(at(&lanes, "COPY public.a (id) FROM stdin WITH (FREEZE)"), at(&plain, "COPY public.a (id) FROM stdin;"));
    assert_eq!(at(&lanes, "COPY public.b"), at(&plain, "COPY public.b"));
    // What was held back went in pieces of `SEND_BYTES` at most, each with its first row's line.
    let sends: Vec<_> = lanes.pieces.iter().filter(|p| p.1 != "unit" && p.1 != "barrier").zip(&lanes.lines).collect();
    let first = sends.iter().position(|(p, _)| p.2.contains("WITH (FREEZE)")).unwrap() + 1;
    let mut line = sends[first].1.1.unwrap();
    for (p, l) in &sends[first..first + 4] {
        assert_eq!(p.1, "rows");
        assert!(p.2.len() <= 256 * 1024 && p.2.ends_with('\n'), "{}", p.2.len());
        assert_eq!(l.1, Some(line));
        line += p.2.matches('\n').count() as u64;
    }

    // Nothing truncates a table the dump did not make, or after pre-data that could object.
    let not_made = dump(rows).replace("CREATE TABLE public.a (id int);", "CREATE EXTENSION e;");
    let trigger = dump(rows).replace(
        "CREATE TABLE public.b (id int);",
        "CREATE TABLE public.b (id int);\nCREATE TRIGGER t BEFORE INSERT ON public.b FOR EACH ROW EXECUTE FUNCTION public.f();",
    );
    for (text, mode) in [(not_made, Truncate::FirstPiece), (trigger, Truncate::FirstPiece), (dump(rows), Truncate::Off)]
    {
        let (lanes, _, summary) = split_with(&text, 2, mode);
        summary.check_complete().unwrap();
        let workers = format!("{}{}", lanes.all(1), lanes.all(2));
        assert!(!workers.contains("TRUNCATE") && !workers.contains("FREEZE"), "{mode:?}: {workers}");
    }
}
