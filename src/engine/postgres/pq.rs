//! One PostgreSQL session in our own process, through libpq (`pq-sys`): what the load sends
//! straight to the server instead of through a `psql` child.
//!
//! Why libpq and not a Rust driver (`postgres`/`tokio-postgres`): libpq *is* what psql used,
//! so the connection behaves as it did — its whole environment (`PGSSLMODE`, `PGSSLROOTCERT`,
//! `PGPASSFILE`, service files, Kerberos), unix-socket hosts, SCRAM, `connect_timeout` — with
//! no second implementation to drift from it; it is installed wherever psql is (libpq5 in the
//! image). Why our own thin wrapper and not the `libpq` crate: that crate takes statements as
//! `&str`, and a dump of a LATIN1 or SQL_ASCII database is not UTF-8; its sys crate also needs
//! libclang to build. The unsafe code is confined to this file; each block says why it holds.
//!
//! A session is used by one thread at a time (`Send`, not `Sync`); `Canceller` may be used from
//! any thread to interrupt what the session runs (libpq's `PQcancel` is made for that).

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::ptr::NonNull;
use std::sync::Mutex;

use anyhow::{anyhow, bail};
use pq_sys as ffi;

use crate::engine::Conn;
use crate::system::cancel::{Cancel, HookGuard};

/// What one statement returned.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A command, or a query whose rows are not wanted.
    Done,
    /// `COPY ... FROM stdin` started: rows follow with `copy_rows`, then `copy_end`.
    CopyIn,
}

/// A statement's error, with the fields psql prints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PgError {
    /// `ERROR`, `FATAL` (localized as the server sends it).
    pub severity: String,
    pub sqlstate: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    pub context: Option<String>,
}

impl PgError {
    /// As psql writes it: `ERROR:  message`, then `DETAIL:`, `HINT:` and `CONTEXT:` lines.
    pub fn lines(&self) -> Vec<String> {
        let severity = if self.severity.is_empty() { "ERROR" } else { &self.severity };
        let mut lines = vec![format!("{severity}:  {}", self.message)];
        for (label, value) in [("DETAIL", &self.detail), ("HINT", &self.hint), ("CONTEXT", &self.context)] {
            if let Some(v) = value {
                lines.push(format!("{label}:  {v}"));
            }
        }
        lines
    }

    fn connection(message: String) -> Box<PgError> {
        Box::new(PgError { severity: "FATAL".into(), message, ..PgError::default() })
    }
}

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.lines().join("; "))
    }
}

/// Notices kept per session (a hostile dump could raise warnings without end).
const KEEP_NOTICES: usize = 100;

/// One connection. Closed when dropped.
pub struct Session {
    conn: NonNull<ffi::PGconn>,
    /// The server's notices since the last `take_notices` (`WARNING:  message`), filled by the
    /// notice receiver; boxed so that its address, given to libpq, never moves.
    notices: Box<Mutex<Vec<String>>>,
}

// SAFETY: a PGconn may move between threads; libpq only forbids using one from two threads at
// once, which `&mut self` on every call (and no `Sync`) rules out.
unsafe impl Send for Session {}

impl Session {
    /// Connects to `database` as `conn` with libpq: explicit host, port (5432 when `conn` has
    /// none, as psql without `PGPORT`), user, database and password (when `conn` has one;
    /// otherwise none at all, never an inherited `PGPASSWORD`, while `PGPASSFILE` still
    /// applies), `options` (`-c name=value ...`), the connect timeout and our application
    /// name; libpq's environment supplies the rest (TLS and the like).
    ///
    /// # Errors
    /// The server's or libpq's message (wrong password, no such database, unreachable host).
    pub fn connect(conn: &Conn, database: &str, options: &str, connect_timeout_secs: u32) -> anyhow::Result<Session> {
        // One connection string, expanded by libpq (`expand_dbname`): there an empty value
        // counts as given, so `password=''` keeps an inherited PGPASSWORD out (libpq then
        // reads the password file), where an empty keyword value would count as unset.
        let quote = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
        let mut info = super::conninfo(conn, database);
        if conn.port.is_none() {
            info.push_str(" port=5432");
        }
        info.push_str(&format!(
            " options={} connect_timeout={} application_name='backup-container' password={}",
            quote(options),
            connect_timeout_secs.max(1),
            quote(conn.password.as_ref().map_or("", |p| p.expose()))
        ));
        let keys = [CString::new("dbname")?];
        let values = [CString::new(info).map_err(|_| anyhow!("a connection setting holds a NUL byte"))?];
        let mut key_ptrs: Vec<*const c_char> = keys.iter().map(|k| k.as_ptr()).collect();
        let mut value_ptrs: Vec<*const c_char> = values.iter().map(|v| v.as_ptr()).collect();
        key_ptrs.push(std::ptr::null());
        value_ptrs.push(std::ptr::null());
        // SAFETY: both arrays are NULL-terminated and their strings outlive the call.
        let raw = unsafe { ffi::PQconnectdbParams(key_ptrs.as_ptr(), value_ptrs.as_ptr(), 1) };
        let conn = NonNull::new(raw).ok_or_else(|| anyhow!("libpq could not allocate a connection"))?;
        let session = Session { conn, notices: Box::default() };
        // SAFETY: a connection libpq returned, possibly failed (which PQstatus reports).
        if unsafe { ffi::PQstatus(session.conn.as_ptr()) } != ffi::ConnStatusType::CONNECTION_OK {
            bail!("{}", session.last_error().trim());
        }
        let sink: *const Mutex<Vec<String>> = &*session.notices;
        // SAFETY: the receiver runs only inside libpq calls on this connection, which all end
        // before `Drop` finishes it; the sink it is given lives in the same Session.
        unsafe { ffi::PQsetNoticeReceiver(session.conn.as_ptr(), Some(notice), sink as *mut c_void) };
        Ok(session)
    }

    /// Runs one statement (several in one text would run as one implicit transaction).
    ///
    /// # Errors
    /// The statement's error; a lost connection (`FATAL`).
    pub fn exec(&mut self, sql: &[u8]) -> Result<Outcome, Box<PgError>> {
        let text = sql_text(sql)?;
        // SAFETY: a live connection and a NUL-terminated statement.
        let result = unsafe { ffi::PQexec(self.conn.as_ptr(), text.as_ptr()) };
        let result = Result_::take(result).ok_or_else(|| PgError::connection(self.last_error()))?;
        match result.status() {
            ffi::ExecStatusType::PGRES_COPY_IN => Ok(Outcome::CopyIn),
            ffi::ExecStatusType::PGRES_COMMAND_OK
            | ffi::ExecStatusType::PGRES_TUPLES_OK
            | ffi::ExecStatusType::PGRES_EMPTY_QUERY => Ok(Outcome::Done),
            _ => Err(result.error(|| self.last_error())),
        }
    }

    /// Runs a query (one statement, or several as one simple query) and returns the rows of
    /// every result, as text (`None`: NULL).
    ///
    /// # Errors
    /// The first statement's error (the server runs none after it), a lost connection.
    pub fn query(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, Box<PgError>> {
        let text = sql_text(sql.as_bytes())?;
        // SAFETY: a live connection and a NUL-terminated query.
        if unsafe { ffi::PQsendQuery(self.conn.as_ptr(), text.as_ptr()) } != 1 {
            return Err(PgError::connection(self.last_error()));
        }
        let mut rows = Vec::new();
        let mut outcome = Ok(());
        loop {
            // SAFETY: a live connection; NULL ends the results of the query.
            let Some(result) = Result_::take(unsafe { ffi::PQgetResult(self.conn.as_ptr()) }) else { break };
            match result.status() {
                ffi::ExecStatusType::PGRES_TUPLES_OK => rows.extend(result.rows()),
                ffi::ExecStatusType::PGRES_COMMAND_OK | ffi::ExecStatusType::PGRES_EMPTY_QUERY => {}
                ffi::ExecStatusType::PGRES_COPY_IN => {
                    // SAFETY: a live connection in COPY IN: end it with no rows, as refused.
                    unsafe { ffi::PQputCopyEnd(self.conn.as_ptr(), c"COPY FROM STDIN is not a query".as_ptr()) };
                }
                _ if outcome.is_ok() => outcome = Err(result.error(|| self.last_error())),
                _ => {}
            }
        }
        outcome.map(|()| rows)
    }

    /// The server's notices (warnings, or more with `client_min_messages`) since the last call.
    pub fn take_notices(&mut self) -> Vec<String> {
        std::mem::take(&mut *self.notices.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Cancels what this session runs when `cancel` is cancelled (libpq's cancel request,
    /// sent by whoever cancels), until the guard is dropped. No thread waits for it.
    pub fn watch(&self, cancel: &Cancel) -> Option<HookGuard> {
        let canceller = self.canceller()?;
        Some(cancel.on_cancel(move || canceller.cancel()))
    }

    /// Sends COPY data (any cut: the server joins it into rows).
    ///
    /// # Errors
    /// The COPY already failed on the server, or the connection is lost: `copy_end` tells why.
    pub fn copy_rows(&mut self, data: &[u8]) -> Result<(), ()> {
        for piece in data.chunks(1 << 30) {
            // SAFETY: a live connection in COPY IN state (libpq checks and returns -1 if not);
            // the length is that of the buffer, below i32::MAX.
            let sent = unsafe { ffi::PQputCopyData(self.conn.as_ptr(), piece.as_ptr().cast(), piece.len() as c_int) };
            if sent != 1 {
                return Err(());
            }
        }
        Ok(())
    }

    /// Ends the COPY and returns the rows the server stored (its `COPY n`; `None` when its
    /// reply holds no number), or the first error of its rows.
    ///
    /// # Errors
    /// The server's error for the COPY, or a lost connection.
    pub fn copy_end(&mut self) -> Result<Option<u64>, Box<PgError>> {
        // SAFETY: a live connection; libpq refuses (-1) when no COPY is in progress, and the
        // results below then carry the COPY's error.
        unsafe { ffi::PQputCopyEnd(self.conn.as_ptr(), std::ptr::null()) };
        let mut outcome = Ok(None);
        loop {
            // SAFETY: a live connection; NULL ends the results of the command.
            let raw = unsafe { ffi::PQgetResult(self.conn.as_ptr()) };
            let Some(result) = Result_::take(raw) else { break };
            match result.status() {
                ffi::ExecStatusType::PGRES_COMMAND_OK => {
                    if let Ok(rows) = outcome.as_mut() {
                        *rows = result.tuples();
                    }
                }
                ffi::ExecStatusType::PGRES_COPY_IN => {
                    // Still copying (the end could not be sent): the connection is broken.
                    return Err(PgError::connection(self.last_error()));
                }
                _ if outcome.is_ok() => outcome = Err(result.error(|| self.last_error())),
                _ => {}
            }
        }
        outcome
    }

    /// A handle that cancels what this session runs, from any thread.
    fn canceller(&self) -> Option<Canceller> {
        // SAFETY: a live connection; the PGcancel is freed by the Canceller's Drop.
        NonNull::new(unsafe { ffi::PQgetCancel(self.conn.as_ptr()) }).map(|c| Canceller { cancel: c })
    }

    fn last_error(&self) -> String {
        // SAFETY: a live connection; libpq owns the message, copied at once.
        let message = unsafe { CStr::from_ptr(ffi::PQerrorMessage(self.conn.as_ptr())) };
        let text = message.to_string_lossy().trim().to_string();
        if text.is_empty() { "the connection to the server was lost".into() } else { text }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // SAFETY: the connection is ours and used no more.
        unsafe { ffi::PQfinish(self.conn.as_ptr()) };
    }
}

/// Rows as psql prints them unaligned and tuples only: fields joined by `|`, NULL empty, one
/// line per row.
pub fn psql_text(rows: &[Vec<Option<String>>]) -> String {
    let mut out = String::new();
    for row in rows {
        let fields: Vec<&str> = row.iter().map(|f| f.as_deref().unwrap_or("")).collect();
        out.push_str(&fields.join("|"));
        out.push('\n');
    }
    out
}

/// Cancels the running statement of one session (`PQcancel`, thread-safe by design).
struct Canceller {
    cancel: NonNull<ffi::PGcancel>,
}

// SAFETY: libpq documents PQcancel as safe to call from any thread, on a PGcancel object
// that is not freed meanwhile (it is freed only by Drop, which needs ownership).
unsafe impl Send for Canceller {}
unsafe impl Sync for Canceller {}

impl Canceller {
    /// Asks the server to cancel; best effort (the statement may have ended).
    pub fn cancel(&self) {
        let mut buf = [0 as c_char; 256];
        // SAFETY: a live PGcancel and a buffer of the size given.
        unsafe { ffi::PQcancel(self.cancel.as_ptr(), buf.as_mut_ptr(), buf.len() as c_int) };
    }
}

impl Drop for Canceller {
    fn drop(&mut self) {
        // SAFETY: ours, used no more.
        unsafe { ffi::PQfreeCancel(self.cancel.as_ptr()) };
    }
}

/// A PGresult, cleared when dropped.
struct Result_(NonNull<ffi::PGresult>);

impl Result_ {
    fn take(raw: *mut ffi::PGresult) -> Option<Result_> {
        NonNull::new(raw).map(Result_)
    }

    fn status(&self) -> ffi::ExecStatusType {
        // SAFETY: a live result.
        unsafe { ffi::PQresultStatus(self.0.as_ptr()) }
    }

    fn field(&self, code: u8) -> Option<String> {
        field(self.0.as_ptr(), code)
    }

    /// The rows the command reports (`COPY n`: the rows the server stored); `None` when it
    /// reports no number.
    fn tuples(&self) -> Option<u64> {
        // SAFETY: a live result; libpq owns the string (empty when the command reports none).
        let text = unsafe { CStr::from_ptr(ffi::PQcmdTuples(self.0.as_ptr())) };
        text.to_str().ok().and_then(|t| t.parse().ok())
    }

    fn error(&self, fallback: impl FnOnce() -> String) -> Box<PgError> {
        let message = self.field(ffi::PG_DIAG_MESSAGE_PRIMARY).unwrap_or_else(fallback);
        Box::new(PgError {
            severity: self.field(ffi::PG_DIAG_SEVERITY).unwrap_or_else(|| "ERROR".into()),
            sqlstate: self.field(ffi::PG_DIAG_SQLSTATE).unwrap_or_default(),
            message,
            detail: self.field(ffi::PG_DIAG_MESSAGE_DETAIL),
            hint: self.field(ffi::PG_DIAG_MESSAGE_HINT),
            context: self.field(ffi::PG_DIAG_CONTEXT),
        })
    }

    fn rows(&self) -> Vec<Vec<Option<String>>> {
        let r = self.0.as_ptr();
        // SAFETY: a live result; indexes below its counts; values are NUL-terminated text.
        unsafe {
            let (rows, cols) = (ffi::PQntuples(r), ffi::PQnfields(r));
            (0..rows)
                .map(|i| {
                    (0..cols)
                        .map(|j| {
                            (ffi::PQgetisnull(r, i, j) == 0)
                                .then(|| CStr::from_ptr(ffi::PQgetvalue(r, i, j)).to_string_lossy().into_owned())
                        })
                        .collect()
                })
                .collect()
        }
    }
}

impl Drop for Result_ {
    fn drop(&mut self) {
        // SAFETY: ours, used no more.
        unsafe { ffi::PQclear(self.0.as_ptr()) };
    }
}

/// SQL as libpq takes it; a NUL byte (which no SQL text holds) is the statement's error.
fn sql_text(sql: &[u8]) -> Result<CString, Box<PgError>> {
    CString::new(sql)
        .map_err(|_| Box::new(PgError { message: "the statement holds a NUL byte".into(), ..PgError::default() }))
}

fn field(result: *const ffi::PGresult, code: u8) -> Option<String> {
    // SAFETY: a live result; the field is NULL or NUL-terminated text owned by the result.
    let raw = unsafe { ffi::PQresultErrorField(result, c_int::from(code)) };
    (!raw.is_null()).then(|| unsafe { CStr::from_ptr(raw) }.to_string_lossy().into_owned())
}

/// Server notices go to our debug log and to the session's list (not to libpq's default of
/// stderr).
unsafe extern "C" fn notice(sink: *mut c_void, result: *const ffi::PGresult) {
    let severity = field(result, ffi::PG_DIAG_SEVERITY).unwrap_or_default();
    let message = field(result, ffi::PG_DIAG_MESSAGE_PRIMARY).unwrap_or_default();
    tracing::debug!(%severity, %message, "Server notice.");
    // SAFETY: the pointer given in `connect`, to the Mutex its Session owns.
    let sink = unsafe { &*(sink as *const Mutex<Vec<String>>) };
    let mut kept = sink.lock().unwrap_or_else(|e| e.into_inner());
    if kept.len() < KEEP_NOTICES {
        kept.push(format!("{severity}:  {message}"));
    }
}
