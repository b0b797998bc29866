//! `src/db/schema.rs` is committed, and there is no diesel CLI on CI, so this test is the check
//! that it still matches the migrations: it applies the embedded migrations (through
//! `Db::migrate`, as the server does) to a fresh SQLite database and a fresh PostgreSQL database,
//! reads back what they created, and compares tables, column order, names, types, nullability and
//! primary keys with what `schema.rs` declares.
//!
//! PostgreSQL is expected at 127.0.0.1:5432 (user `postgres`, trust auth). When it is unreachable
//! the PostgreSQL half is skipped with a loud note, except under `CI=true`, where it fails.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Write;
use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_query;
use diesel::sql_types::{Integer, Text};
use heft::db::Db;

const SCHEMA_RS: &str = include_str!("../src/db/schema.rs");
const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres?connect_timeout=5";
const PG_DB_URL_PREFIX: &str = "postgres://postgres@127.0.0.1:5432/";
const HOW_TO_FIX: &str =
    "update src/db/schema.rs (or the migrations under schema/postgres and schema/sqlite) so they agree";

// ---------------------------------------------------------------------------------------------
// What schema.rs declares
// ---------------------------------------------------------------------------------------------

/// A diesel SQL type as written in `table!`, reduced to its last path segment:
/// `diesel::sql_types::Nullable<Text>` is `Nullable` with argument `Text`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ty {
    name: String,
    args: Vec<Ty>,
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if !self.args.is_empty() {
            let args: Vec<String> = self.args.iter().map(Ty::to_string).collect();
            write!(f, "<{}>", args.join(", "))?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Column {
    /// The name in the database (`#[sql_name = "..."]` if given, else the Rust name).
    name: String,
    /// The type without its `Nullable<..>` wrapper.
    ty: Ty,
    nullable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Table {
    name: String,
    primary_key: Vec<String>,
    columns: Vec<Column>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Str(String),
    Punct(char),
    Arrow,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Ident(s) => write!(f, "`{s}`"),
            Tok::Str(s) => write!(f, "{s:?}"),
            Tok::Punct(c) => write!(f, "`{c}`"),
            Tok::Arrow => f.write_str("`->`"),
        }
    }
}

/// Split Rust source into the few token kinds `table!` needs; comments (including doc comments)
/// are dropped, line numbers are kept for error messages.
fn tokenize(src: &str) -> Result<Vec<(Tok, usize)>, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    let mut line = 1;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let start = line;
            let mut depth = 0;
            loop {
                match (chars.get(i), chars.get(i + 1)) {
                    (Some('/'), Some('*')) => {
                        depth += 1;
                        i += 2;
                    }
                    (Some('*'), Some('/')) => {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    }
                    (Some(ch), _) => {
                        if *ch == '\n' {
                            line += 1;
                        }
                        i += 1;
                    }
                    (None, _) => return Err(format!("line {start}: unterminated block comment")),
                }
            }
        } else if c == '"' {
            let start = line;
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    Some('"') => {
                        i += 1;
                        break;
                    }
                    Some('\\') => {
                        if let Some(&e) = chars.get(i + 1) {
                            s.push(e);
                        }
                        i += 2;
                    }
                    Some(&ch) => {
                        if ch == '\n' {
                            line += 1;
                        }
                        s.push(ch);
                        i += 1;
                    }
                    None => return Err(format!("line {start}: unterminated string literal")),
                }
            }
            toks.push((Tok::Str(s), start));
        } else if c.is_alphanumeric() || c == '_' {
            let mut s = String::new();
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                s.push(chars[i]);
                i += 1;
            }
            // Raw identifiers: `r#type`.
            if s == "r" && chars.get(i) == Some(&'#') && chars.get(i + 1).is_some_and(|c| c.is_alphabetic()) {
                s.clear();
                i += 1;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    s.push(chars[i]);
                    i += 1;
                }
            }
            toks.push((Tok::Ident(s), line));
        } else if c == '-' && next == Some('>') {
            toks.push((Tok::Arrow, line));
            i += 2;
        } else {
            toks.push((Tok::Punct(c), line));
            i += 1;
        }
    }
    Ok(toks)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(t, _)| t)
    }

    fn peek_at(&self, n: usize) -> Option<&Tok> {
        self.toks.get(self.pos + n).map(|(t, _)| t)
    }

    fn line(&self) -> usize {
        self.toks.get(self.pos).or(self.toks.last()).map_or(0, |(_, l)| *l)
    }

    fn err<T>(&self, what: &str) -> Result<T, String> {
        let found = self.peek().map_or("end of file".to_string(), Tok::to_string);
        Err(format!("src/db/schema.rs line {}: expected {what}, found {found}", self.line()))
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|(t, _)| t.clone());
        self.pos += 1;
        t
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(&Tok::Punct(c)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        if self.eat(c) { Ok(()) } else { self.err(&format!("`{c}`")) }
    }

    fn ident(&mut self, what: &str) -> Result<String, String> {
        match self.peek() {
            Some(Tok::Ident(s)) => {
                let s = s.clone();
                self.pos += 1;
                Ok(s)
            }
            _ => self.err(what),
        }
    }

    /// Skip a balanced `(..)`, `[..]` or `{..}` group starting at the current opening token.
    fn skip_group(&mut self) -> Result<(), String> {
        let mut stack = Vec::new();
        loop {
            let line = self.line();
            match self.next() {
                Some(Tok::Punct(c @ ('(' | '[' | '{'))) => stack.push(c),
                Some(Tok::Punct(c @ (')' | ']' | '}'))) => {
                    let open = stack.pop();
                    let want = match c {
                        ')' => '(',
                        ']' => '[',
                        _ => '{',
                    };
                    if open != Some(want) {
                        return Err(format!("src/db/schema.rs line {line}: unbalanced `{c}`"));
                    }
                }
                Some(_) => {}
                None => return Err("src/db/schema.rs: unbalanced brackets at end of file".to_string()),
            }
            if stack.is_empty() {
                return Ok(());
            }
        }
    }

    /// Attributes before a table or column; returns the `sql_name` if one is given.
    fn attributes(&mut self) -> Result<Option<String>, String> {
        let mut sql_name = None;
        while self.peek() == Some(&Tok::Punct('#')) {
            self.pos += 1;
            self.eat('!');
            if self.peek() != Some(&Tok::Punct('[')) {
                return self.err("`[` after `#`");
            }
            if self.peek_at(1) == Some(&Tok::Ident("sql_name".into()))
                && self.peek_at(2) == Some(&Tok::Punct('='))
                && let Some(Tok::Str(s)) = self.peek_at(3)
            {
                sql_name = Some(s.clone());
            }
            self.skip_group()?;
        }
        Ok(sql_name)
    }

    /// `a::b::C<D, E<F>>`, reduced to last path segments.
    fn ty(&mut self) -> Result<Ty, String> {
        self.eat(':'); // leading `::`
        self.eat(':');
        let mut name = self.ident("a column type")?;
        while self.peek() == Some(&Tok::Punct(':')) && self.peek_at(1) == Some(&Tok::Punct(':')) {
            self.pos += 2;
            name = self.ident("a type name after `::`")?;
        }
        let mut args = Vec::new();
        if self.eat('<') {
            loop {
                args.push(self.ty()?);
                if self.eat(',') {
                    if self.eat('>') {
                        break;
                    }
                    continue;
                }
                self.expect('>')?;
                break;
            }
        }
        Ok(Ty { name, args })
    }

    /// One table definition inside `table! { .. }`.
    fn table(&mut self) -> Result<Table, String> {
        let table_sql_name = self.attributes()?;
        let mut name = self.ident("a table name")?;
        if self.eat('.') {
            name = self.ident("a table name after the schema name")?;
        }
        let name = table_sql_name.unwrap_or(name);
        let mut primary_key = Vec::new();
        if self.eat('(') {
            loop {
                if self.eat(')') {
                    break;
                }
                primary_key.push(self.ident("a primary key column")?);
                if !self.eat(',') {
                    self.expect(')')?;
                    break;
                }
            }
        } else {
            primary_key.push("id".to_string()); // diesel's default
        }
        self.expect('{')?;
        let mut columns = Vec::new();
        let mut rust_names = BTreeMap::new();
        loop {
            if self.eat('}') {
                break;
            }
            let sql_name = self.attributes()?;
            let rust_name = self.ident("a column name")?;
            if self.next() != Some(Tok::Arrow) {
                self.pos -= 1;
                return self.err(&format!("`->` after column `{name}.{rust_name}`"));
            }
            let ty = self.ty()?;
            let (ty, nullable) = match ty {
                Ty { name: n, mut args } if n == "Nullable" && args.len() == 1 => (args.remove(0), true),
                ty => (ty, false),
            };
            let column_name = sql_name.unwrap_or_else(|| rust_name.clone());
            rust_names.insert(rust_name, column_name.clone());
            columns.push(Column { name: column_name, ty, nullable });
            if !self.eat(',') {
                self.expect('}')?;
                break;
            }
        }
        // Primary keys name Rust columns; report them by their database names.
        let primary_key = primary_key.into_iter().map(|k| rust_names.get(&k).cloned().unwrap_or(k)).collect();
        Ok(Table { name, primary_key, columns })
    }
}

/// Every table declared with `table!` / `diesel::table!` in `src`.
fn parse_schema(src: &str) -> Result<Vec<Table>, String> {
    let mut p = Parser { toks: tokenize(src)?, pos: 0 };
    let mut tables = Vec::new();
    while let Some(tok) = p.peek() {
        let is_table_macro = *tok == Tok::Ident("table".into()) && p.peek_at(1) == Some(&Tok::Punct('!'));
        if !is_table_macro {
            p.pos += 1;
            continue;
        }
        p.pos += 2;
        let close = match p.next() {
            Some(Tok::Punct('{')) => '}',
            Some(Tok::Punct('(')) => ')',
            Some(Tok::Punct('[')) => ']',
            _ => {
                p.pos -= 1;
                return p.err("`{` after `table!`");
            }
        };
        loop {
            if p.eat(close) {
                break;
            }
            // `use diesel::sql_types::*;` and the like.
            if p.peek() == Some(&Tok::Ident("use".into())) {
                while p.next().is_some_and(|t| t != Tok::Punct(';')) {}
                continue;
            }
            if p.peek().is_none() {
                return p.err(&format!("`{close}` closing `table!`"));
            }
            tables.push(p.table()?);
        }
        p.eat(';');
    }
    if tables.is_empty() {
        return Err("src/db/schema.rs declares no tables with `diesel::table!`".to_string());
    }
    let mut seen = BTreeSet::new();
    for t in &tables {
        if !seen.insert(&t.name) {
            return Err(format!("src/db/schema.rs declares table `{}` twice", t.name));
        }
    }
    Ok(tables)
}

// ---------------------------------------------------------------------------------------------
// What a migrated database holds
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    fn label(self) -> &'static str {
        match self {
            Backend::Postgres => "PostgreSQL (schema/postgres)",
            Backend::Sqlite => "SQLite (schema/sqlite)",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct DbColumn {
    name: String,
    /// PostgreSQL: `information_schema.columns.data_type`; SQLite: the declared type.
    db_type: String,
    nullable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct DbTable {
    name: String,
    primary_key: Vec<String>,
    columns: Vec<DbColumn>,
}

/// The database types a diesel type may be stored as, or `None` for a type this test does not
/// know yet.
fn accepted_db_types(backend: Backend, ty: &Ty, sole_primary_key: bool) -> Option<Vec<&'static str>> {
    if !ty.args.is_empty() {
        return None;
    }
    let pg = |t: &'static str| Some(vec![t]);
    Some(match (backend, ty.name.as_str()) {
        (Backend::Postgres, "Int8" | "BigInt") => return pg("bigint"),
        (Backend::Postgres, "Int4" | "Integer") => return pg("integer"),
        (Backend::Postgres, "Text") => return pg("text"),
        (Backend::Postgres, "Bool") => return pg("boolean"),
        (Backend::Postgres, "Timestamp") => return pg("timestamp without time zone"),
        (Backend::Postgres, "Float8" | "Double") => return pg("double precision"),
        (Backend::Postgres, "Binary" | "Bytea") => return pg("bytea"),
        // SQLite only makes `INTEGER PRIMARY KEY` (exactly that spelling) an alias of the 64-bit
        // rowid; any other integer column keeps its declared type.
        (Backend::Sqlite, "Int8" | "BigInt") if sole_primary_key => vec!["BIGINT", "INTEGER"],
        (Backend::Sqlite, "Int8" | "BigInt") => vec!["BIGINT"],
        (Backend::Sqlite, "Int4" | "Integer") => vec!["INTEGER"],
        (Backend::Sqlite, "Text") => vec!["TEXT"],
        (Backend::Sqlite, "Bool") => vec!["BOOLEAN"],
        (Backend::Sqlite, "Timestamp") => vec!["TIMESTAMP"],
        (Backend::Sqlite, "Float8" | "Double") => vec!["DOUBLE"],
        (Backend::Sqlite, "Binary" | "Blob") => vec!["BLOB"],
        _ => return None,
    })
}

fn type_matches(backend: Backend, accepted: &[&str], found: &str) -> bool {
    match backend {
        Backend::Postgres => accepted.contains(&found),
        // SQLite keeps the declared type as written; the case is not significant.
        Backend::Sqlite => accepted.iter().any(|a| a.eq_ignore_ascii_case(found.trim())),
    }
}

fn nullability(nullable: bool) -> &'static str {
    if nullable { "nullable" } else { "NOT NULL" }
}

fn names<'a>(it: impl IntoIterator<Item = &'a String>) -> String {
    let v: Vec<&str> = it.into_iter().map(String::as_str).collect();
    format!("[{}]", v.join(", "))
}

/// Every difference between `schema.rs` and the migrated database, one line each.
fn compare(backend: Backend, expected: &[Table], found: &[DbTable]) -> Vec<String> {
    let mut diffs = Vec::new();
    let found_by_name: BTreeMap<&str, &DbTable> = found.iter().map(|t| (t.name.as_str(), t)).collect();
    let expected_names: BTreeSet<&str> = expected.iter().map(|t| t.name.as_str()).collect();
    for t in found {
        if !expected_names.contains(t.name.as_str()) {
            let cols: Vec<&String> = t.columns.iter().map(|c| &c.name).collect();
            diffs.push(format!(
                "table `{}`: created by the migrations (columns {}) but missing from schema.rs",
                t.name,
                names(cols)
            ));
        }
    }
    for exp in expected {
        let Some(db) = found_by_name.get(exp.name.as_str()) else {
            diffs.push(format!("table `{}`: declared in schema.rs but not created by the migrations", exp.name));
            continue;
        };
        let exp_cols: Vec<&String> = exp.columns.iter().map(|c| &c.name).collect();
        let db_cols: Vec<&String> = db.columns.iter().map(|c| &c.name).collect();
        if exp_cols != db_cols {
            let mut detail = Vec::new();
            for c in &exp_cols {
                if !db_cols.contains(c) {
                    detail.push(format!("`{c}` only in schema.rs"));
                }
            }
            for c in &db_cols {
                if !exp_cols.contains(c) {
                    detail.push(format!("`{c}` only in the database"));
                }
            }
            if let Some(i) = exp_cols.iter().zip(&db_cols).position(|(a, b)| a != b) {
                detail.push(format!("first difference at position {}: `{}` vs `{}`", i + 1, exp_cols[i], db_cols[i]));
            }
            diffs.push(format!(
                "table `{}`: columns differ (name or order): schema.rs has {}, the database has {}; {}",
                exp.name,
                names(exp_cols.iter().copied()),
                names(db_cols.iter().copied()),
                detail.join("; ")
            ));
        }
        let sole_pk = |c: &str| exp.primary_key.len() == 1 && exp.primary_key[0] == c;
        for col in &exp.columns {
            let Some(dbc) = db.columns.iter().find(|d| d.name == col.name) else { continue };
            match accepted_db_types(backend, &col.ty, sole_pk(&col.name)) {
                None => diffs.push(format!(
                    "table `{}`, column `{}`: diesel type `{}` is not in this test's type mapping (found {:?} in \
                     the database); extend accepted_db_types() in tests/schema.rs",
                    exp.name, col.name, col.ty, dbc.db_type
                )),
                Some(accepted) if !type_matches(backend, &accepted, &dbc.db_type) => diffs.push(format!(
                    "table `{}`, column `{}`: type differs: schema.rs has `{}` (expected {}), found {:?}",
                    exp.name,
                    col.name,
                    col.ty,
                    accepted.iter().map(|a| format!("{a:?}")).collect::<Vec<_>>().join(" or "),
                    dbc.db_type
                )),
                Some(_) => {}
            }
            if col.nullable != dbc.nullable {
                diffs.push(format!(
                    "table `{}`, column `{}`: nullability differs: schema.rs says {} (`{}`), the database says {}",
                    exp.name,
                    col.name,
                    nullability(col.nullable),
                    if col.nullable { format!("Nullable<{}>", col.ty) } else { col.ty.to_string() },
                    nullability(dbc.nullable)
                ));
            }
        }
        if exp.primary_key != db.primary_key {
            diffs.push(format!(
                "table `{}`: primary key differs: schema.rs has ({}), the database has ({})",
                exp.name,
                exp.primary_key.join(", "),
                db.primary_key.join(", ")
            ));
        }
    }
    diffs
}

fn report(backend: Backend, diffs: &[String]) -> String {
    format!(
        "src/db/schema.rs does not match the {} migrations:\n  - {}\nTo fix: {HOW_TO_FIX}.",
        backend.label(),
        diffs.join("\n  - ")
    )
}

fn check(backend: Backend, found: &[DbTable]) {
    let expected = parse_schema(SCHEMA_RS).unwrap_or_else(|e| panic!("cannot parse src/db/schema.rs: {e}"));
    let diffs = compare(backend, &expected, found);
    assert!(diffs.is_empty(), "{}", report(backend, &diffs));
}

// --- SQLite -----------------------------------------------------------------------------------

#[derive(QueryableByName)]
struct SqliteTableName {
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(QueryableByName)]
struct SqliteColumnInfo {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text, column_name = "type")]
    ty: String,
    #[diesel(sql_type = Integer)]
    notnull: i32,
    #[diesel(sql_type = Integer)]
    pk: i32,
}

fn introspect_sqlite(conn: &mut SqliteConnection) -> Vec<DbTable> {
    let tables: Vec<SqliteTableName> = sql_query(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
         AND name <> '__diesel_schema_migrations' ORDER BY name",
    )
    .load(conn)
    .expect("list SQLite tables");
    tables
        .into_iter()
        .map(|t| {
            let cols: Vec<SqliteColumnInfo> =
                sql_query(format!("PRAGMA table_info(\"{}\")", t.name.replace('"', "\"\"")))
                    .load(conn)
                    .unwrap_or_else(|e| panic!("PRAGMA table_info({}): {e}", t.name));
            let mut pk: Vec<(i32, String)> = cols.iter().filter(|c| c.pk > 0).map(|c| (c.pk, c.name.clone())).collect();
            pk.sort();
            DbTable {
                name: t.name,
                primary_key: pk.into_iter().map(|(_, n)| n).collect(),
                columns: cols
                    .into_iter()
                    // SQLite reports notnull=0 for primary key columns (INTEGER PRIMARY KEY is the
                    // rowid, never NULL); diesel declares them not null.
                    .map(|c| DbColumn { name: c.name, db_type: c.ty, nullable: c.notnull == 0 && c.pk == 0 })
                    .collect(),
            }
        })
        .collect()
}

// --- PostgreSQL -------------------------------------------------------------------------------

#[derive(QueryableByName)]
struct PgTableName {
    #[diesel(sql_type = Text)]
    table_name: String,
}

#[derive(QueryableByName)]
struct PgColumnInfo {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Text)]
    data_type: String,
    #[diesel(sql_type = Text)]
    is_nullable: String,
}

#[derive(QueryableByName)]
struct PgKeyColumn {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
}

fn introspect_pg(conn: &mut PgConnection) -> Vec<DbTable> {
    let tables: Vec<PgTableName> = sql_query(
        "SELECT table_name::text AS table_name FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE' AND table_name <> '__diesel_schema_migrations' \
         ORDER BY table_name",
    )
    .load(conn)
    .expect("list PostgreSQL tables");
    let columns: Vec<PgColumnInfo> = sql_query(
        "SELECT c.table_name::text AS table_name, c.column_name::text AS column_name, \
                c.data_type::text AS data_type, c.is_nullable::text AS is_nullable \
         FROM information_schema.columns c \
         WHERE c.table_schema = 'public' AND c.table_name <> '__diesel_schema_migrations' \
         ORDER BY c.table_name, c.ordinal_position",
    )
    .load(conn)
    .expect("list PostgreSQL columns");
    let keys: Vec<PgKeyColumn> = sql_query(
        "SELECT tc.table_name::text AS table_name, k.column_name::text AS column_name \
         FROM information_schema.table_constraints tc \
         JOIN information_schema.key_column_usage k \
           ON k.constraint_schema = tc.constraint_schema AND k.constraint_name = tc.constraint_name \
          AND k.table_schema = tc.table_schema AND k.table_name = tc.table_name \
         WHERE tc.table_schema = 'public' AND tc.constraint_type = 'PRIMARY KEY' \
         ORDER BY tc.table_name, k.ordinal_position",
    )
    .load(conn)
    .expect("list PostgreSQL primary keys");
    let mut out: BTreeMap<String, DbTable> = tables
        .into_iter()
        .map(|t| (t.table_name.clone(), DbTable { name: t.table_name, primary_key: vec![], columns: vec![] }))
        .collect();
    for c in columns {
        if let Some(t) = out.get_mut(&c.table_name) {
            t.columns.push(DbColumn { name: c.column_name, db_type: c.data_type, nullable: c.is_nullable == "YES" });
        }
    }
    for k in keys {
        if let Some(t) = out.get_mut(&k.table_name) {
            t.primary_key.push(k.column_name);
        }
    }
    out.into_values().collect()
}

/// A throwaway PostgreSQL database, dropped when this goes out of scope, also when the test fails.
struct TempPgDb {
    admin: PgConnection,
    name: String,
}

impl TempPgDb {
    fn create(mut admin: PgConnection) -> TempPgDb {
        let name = format!("heft_schema_{:016x}", rand::random::<u64>());
        sql_query(format!("CREATE DATABASE {name}")).execute(&mut admin).expect("CREATE DATABASE");
        TempPgDb { admin, name }
    }

    fn url(&self) -> String {
        format!("{PG_DB_URL_PREFIX}{}", self.name)
    }
}

impl Drop for TempPgDb {
    fn drop(&mut self) {
        // Never panic here: this may run while the test is already panicking.
        if let Err(e) =
            sql_query(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)).execute(&mut self.admin)
        {
            let _ = writeln!(std::io::stderr(), "warning: could not drop test database {}: {e}", self.name);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn schema_rs_matches_sqlite_migrations() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("heft.db");
    let path = path.to_str().expect("utf-8 temp path");
    {
        let db = Db::open(&format!("sqlite://{path}"), 1, Duration::from_secs(10)).expect("open SQLite");
        db.migrate().unwrap_or_else(|e| panic!("SQLite migrations (schema/sqlite) fail on a fresh database: {e}"));
    }
    let mut conn = SqliteConnection::establish(path).expect("reopen SQLite");
    let found = introspect_sqlite(&mut conn);
    check(Backend::Sqlite, &found);
}

#[test]
fn schema_rs_matches_postgres_migrations() {
    let admin = match PgConnection::establish(PG_ADMIN_URL) {
        Ok(c) => c,
        Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: schema_rs_matches_postgres_migrations: PostgreSQL is not reachable at 127.0.0.1:5432 ({}); \
                 src/db/schema.rs was NOT checked against schema/postgres. Start PostgreSQL to run it (it fails \
                 instead of skipping when CI=true).",
                e.to_string().trim()
            );
            return;
        }
        Err(e) => panic!("PostgreSQL is not reachable at 127.0.0.1:5432 and CI=true, so this cannot be skipped: {e}"),
    };
    let temp = TempPgDb::create(admin);
    {
        let db = Db::open(&temp.url(), 1, Duration::from_secs(10)).expect("open PostgreSQL");
        db.migrate()
            .unwrap_or_else(|e| panic!("PostgreSQL migrations (schema/postgres) fail on a fresh database: {e}"));
    }
    let found = {
        let mut conn = PgConnection::establish(&temp.url()).expect("connect to the test database");
        introspect_pg(&mut conn)
    };
    check(Backend::Postgres, &found);
}

// --- Self-tests of the parser and the comparison ----------------------------------------------

const FIXTURE: &str = r#"
// @generated automatically by Diesel CLI.

pub mod sql_types {
    #[derive(diesel::sql_types::SqlType)]
    #[diesel(postgres_type(name = "mood"))]
    pub struct Mood;
}

diesel::table! {
    use diesel::sql_types::*;

    /// Things. /* not a comment end */
    things (id) {
        id -> Int8,
        /* a block comment */ name -> Text,
        #[sql_name = "type"]
        kind -> diesel::sql_types::Nullable<diesel::sql_types::Int4>,
        happy -> Bool,
        seen_at -> Nullable<Timestamp>,
        weight -> Nullable<Float8>,
    }
}

table! {
    pairs (left, right) {
        left -> Text,
        right -> BigInt
    }
}

diesel::joinable!(pairs -> things (left));
diesel::allow_tables_to_appear_in_same_query!(pairs, things,);
"#;

fn col(name: &str, db_type: &str, nullable: bool) -> DbColumn {
    DbColumn { name: name.into(), db_type: db_type.into(), nullable }
}

/// `FIXTURE` as each backend would report it.
fn fixture_db(backend: Backend) -> Vec<DbTable> {
    let sqlite = backend == Backend::Sqlite;
    let t = |pg: &str, lite: &str| if sqlite { lite.to_string() } else { pg.to_string() };
    vec![
        DbTable {
            name: "pairs".into(),
            primary_key: vec!["left".into(), "right".into()],
            columns: vec![col("left", &t("text", "TEXT"), false), col("right", &t("bigint", "BIGINT"), false)],
        },
        DbTable {
            name: "things".into(),
            primary_key: vec!["id".into()],
            columns: vec![
                col("id", &t("bigint", "INTEGER"), false),
                col("name", &t("text", "text"), false),
                col("type", &t("integer", "INTEGER"), true),
                col("happy", &t("boolean", "BOOLEAN"), false),
                col("seen_at", &t("timestamp without time zone", "TIMESTAMP"), true),
                col("weight", &t("double precision", "DOUBLE"), true),
            ],
        },
    ]
}

#[test]
fn parser_reads_table_macros() {
    let tables = parse_schema(FIXTURE).expect("parse fixture");
    let summary: Vec<(String, Vec<String>, Vec<String>)> = tables
        .iter()
        .map(|t| {
            let cols = t.columns.iter().map(|c| format!("{} {}{}", c.name, c.ty, if c.nullable { "?" } else { "" }));
            (t.name.clone(), t.primary_key.clone(), cols.collect())
        })
        .collect();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        summary,
        vec![
            (
                "things".to_string(),
                s(&["id"]),
                s(&["id Int8", "name Text", "type Int4?", "happy Bool", "seen_at Timestamp?", "weight Float8?"])
            ),
            ("pairs".to_string(), s(&["left", "right"]), s(&["left Text", "right BigInt"])),
        ]
    );
    // The real file parses too, and declares something.
    assert!(!parse_schema(SCHEMA_RS).expect("parse src/db/schema.rs").is_empty());
}

#[test]
fn comparison_accepts_a_matching_schema() {
    let tables = parse_schema(FIXTURE).unwrap();
    for backend in [Backend::Postgres, Backend::Sqlite] {
        let diffs = compare(backend, &tables, &fixture_db(backend));
        assert!(diffs.is_empty(), "{backend:?}: {diffs:#?}");
    }
}

#[test]
fn comparison_reports_each_difference() {
    let changed = FIXTURE
        .replace("name -> Text,", "title -> Text,") // renamed
        .replace("happy -> Bool,", "happy -> Text,") // retyped
        .replace("weight -> Nullable<Float8>,", "weight -> Float8,") // nullability
        .replace("pairs (left, right)", "pairs (left)") // primary key
        .replace("right -> BigInt", "right -> Numeric"); // unknown to the mapping
    let tables = parse_schema(&changed).unwrap();
    for backend in [Backend::Postgres, Backend::Sqlite] {
        let diffs = compare(backend, &tables, &fixture_db(backend));
        let all = diffs.join("\n");
        let has = |needles: &[&str]| diffs.iter().any(|d| needles.iter().all(|n| d.contains(n)));
        assert!(
            has(&["table `things`", "columns differ", "`title` only in schema.rs", "`name` only in the database"]),
            "{all}"
        );
        let happy_type = if backend == Backend::Sqlite { "found \"BOOLEAN\"" } else { "found \"boolean\"" };
        assert!(has(&["table `things`, column `happy`", "type differs", "`Text`", happy_type]), "{all}");
        assert!(has(&["column `weight`", "schema.rs says NOT NULL", "the database says nullable"]), "{all}");
        assert!(
            has(&["table `pairs`: primary key differs", "schema.rs has (left)", "the database has (left, right)"]),
            "{all}"
        );
        assert!(has(&["column `right`", "`Numeric` is not in this test's type mapping", "extend"]), "{all}");
        assert_eq!(diffs.len(), 5, "{all}");
        assert!(report(backend, &diffs).contains(HOW_TO_FIX));
    }
    // Tables only on one side.
    let mut db = fixture_db(Backend::Postgres);
    db[0].name = "pears".into();
    let diffs = compare(Backend::Postgres, &parse_schema(FIXTURE).unwrap(), &db);
    assert!(diffs.iter().any(|d| d.contains("table `pears`: created by the migrations")), "{diffs:#?}");
    assert!(diffs.iter().any(|d| d.contains("table `pairs`: declared in schema.rs but not created")), "{diffs:#?}");
    // An INTEGER that is not the sole primary key is not accepted as Int8 on SQLite.
    let mut db = fixture_db(Backend::Sqlite);
    db[0].columns[1].db_type = "INTEGER".into();
    let diffs = compare(Backend::Sqlite, &parse_schema(FIXTURE).unwrap(), &db);
    assert!(diffs.iter().any(|d| d.contains("column `right`: type differs")), "{diffs:#?}");
}
