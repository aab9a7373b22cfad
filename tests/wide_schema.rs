//! A wide schema through backup, restore (under a new name) and verification: partitioned
//! and inherited tables, generated columns, large objects, row-level security, publications,
//! event triggers, extensions, sequences, foreign keys across schemas, comments, and quoted
//! and non-ASCII names. The restored database dumps exactly like the original, and every
//! table's rows are counted and compared.

use crate::harness::app::Fixture;
use crate::harness::run;

pub(crate) const SUPERUSER_PART: &str = "CREATE EXTENSION hstore; CREATE EXTENSION pg_trgm;
    CREATE FUNCTION public.on_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$BEGIN NULL; END$$;
    CREATE EVENT TRIGGER audit_ddl ON ddl_command_end EXECUTE FUNCTION public.on_ddl();";

pub(crate) const APP_PART: &str = r#"SET ROLE app;
    CREATE SCHEMA "Ünïcode sch";
    CREATE TABLE "Ünïcode sch"."Tåble ""quoted""" (id int PRIMARY KEY, "naïve col" text, h hstore);
    INSERT INTO "Ünïcode sch"."Tåble ""quoted""" SELECT g, 'ü ' || g || E'\ttab\nnewline', hstore('k', g::text) FROM generate_series(1, 300) g;
    CREATE TABLE public.measure (id int, at date, v numeric, total numeric GENERATED ALWAYS AS (v * 2) STORED) PARTITION BY RANGE (at);
    CREATE TABLE public.measure_2025 PARTITION OF public.measure FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
    CREATE TABLE public.measure_2026 PARTITION OF public.measure FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
    INSERT INTO public.measure (id, at, v) SELECT g, date '2025-06-01' + g, g FROM generate_series(1, 400) g;
    CREATE TABLE public.parent (id int, note text);
    CREATE TABLE public.child (extra int) INHERITS (public.parent);
    INSERT INTO public.parent VALUES (1, 'p'); INSERT INTO public.child VALUES (2, 'c', 3), (4, 'd', 5);
    CREATE TABLE public.secret (id int, owner_name text);
    ALTER TABLE public.secret ENABLE ROW LEVEL SECURITY;
    CREATE POLICY own ON public.secret USING (owner_name = current_user);
    INSERT INTO public.secret VALUES (1, 'app'), (2, 'someone else');
    SELECT lo_from_bytea(0, 'large object bytes');
    CREATE PUBLICATION pub FOR TABLE public.parent;
    CREATE TABLE public.t_fk (id int REFERENCES "Ünïcode sch"."Tåble ""quoted""" (id));
    INSERT INTO public.t_fk SELECT g FROM generate_series(1, 50) g;
    CREATE INDEX trgm ON "Ünïcode sch"."Tåble ""quoted""" USING gin ("naïve col" gin_trgm_ops);
    CREATE SEQUENCE public.s; SELECT setval('public.s', 42);
    COMMENT ON TABLE public.parent IS 'with comment';"#;

/// pg_dump of `db` without the per-run `\restrict` keys.
fn normalised_dump(fx: &Fixture, db: &str) -> String {
    fx.pg
        .dump_plain(db)
        .lines()
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn wide_schema_round_trip_and_verification() {
    let Some(fx) = Fixture::start(5) else { return };
    fx.pg.psql("postgres", "CREATE DATABASE wide OWNER app");
    fx.pg.psql("wide", SUPERUSER_PART);
    fx.pg.psql("wide", APP_PART);
    let port = fx.pg.port;
    let conf = fx.conf(&format!("localhost:{port}/wide\n"));
    let r = run(&mut fx.once(&conf));
    assert_eq!(r.code, 0, "{}", r.all());

    let r = run(fx.cmd(&conf).args(["-r", &format!("localhost:{port}/wide_copy"), "-f", "localhost-wide", "-s"]));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains("rows checked"), "{}", r.all());
    assert_eq!(normalised_dump(&fx, "wide_copy"), normalised_dump(&fx, "wide"));
    assert_eq!(fx.pg.row_counts("wide_copy"), fx.pg.row_counts("wide"));
    assert_eq!(
        fx.pg.psql("wide_copy", "SELECT convert_from(lo_get(oid), 'UTF8') FROM pg_largeobject_metadata"),
        "large object bytes"
    );

    let v = run(fx.cmd(&conf).args(["-v", "all"]).env("VERIFY_DIR", fx.verify_dir()));
    assert_eq!(v.code, 0, "{}", v.all());
    // 300 + 400 (through two partitions) + 1 + 2 + 2 + 50 rows, each table counted.
    assert!(v.stderr.contains("755 rows checked"), "{}", v.all());
}
