//! Storage: diesel over SQLite (embedded) or PostgreSQL (production), one code path.
//!
//! `AnyConnection` is diesel's `MultiConnection` over both; queries are written once against it.
//! Where diesel cannot build something for `MultiBackend` (upserts, RETURNING, transaction
//! control), `on_backend!` runs the same diesel code against the concrete connection. Queries are
//! blocking: async callers go
//! through [`Db::run`], which uses the blocking thread pool.

pub mod alerts;
pub mod bills;
pub mod cabinets;
pub mod columns;
pub mod commands;
pub mod consumed;
pub mod lane_health;
pub mod layout;
pub mod live;
pub mod models;
pub mod operators;
pub mod orders;
pub mod outbox;
pub mod payments;
pub mod products;
pub mod reconcile;
pub mod refunds;
pub mod reports;
pub mod restock;
pub mod reviews;
pub mod schema;
pub mod sessions;
pub mod stock;
pub mod stocktake;
pub mod users;
pub mod weight_log;

use std::sync::Arc;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{self, ManageConnection};
use diesel::{Connection, ConnectionError, PgConnection, SqliteConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

pub const PG_MIGRATIONS: EmbeddedMigrations = embed_migrations!("schema/postgres");
pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("schema/sqlite");

#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    Postgresql(PgConnection),
    Sqlite(SqliteConnection),
}

/// Run the same diesel code against whichever concrete connection `$conn` holds.
#[macro_export]
macro_rules! on_backend {
    ($conn:expr, |$c:ident| $body:block) => {
        match $conn {
            $crate::db::AnyConnection::Postgresql($c) => $body,
            $crate::db::AnyConnection::Sqlite($c) => $body,
        }
    };
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("database pool: {0}")]
    Pool(#[from] r2d2::PoolError),
    #[error("database connection: {0}")]
    Connect(String),
    #[error("migrations: {0}")]
    Migration(String),
    #[error("database holds an unexpected value: {0}")]
    Corrupt(String),
    #[error("database task was cancelled")]
    Cancelled,
    /// A write for a cabinet under an ownership epoch older than the one its state was last
    /// written under: another node owns the cabinet now.
    #[error("cabinet {sn} is owned under epoch {current}; a write under epoch {epoch} is refused")]
    Fenced { sn: String, epoch: i64, current: i64 },
}

impl DbError {
    pub fn is_unique_violation(&self) -> bool {
        matches!(
            self,
            DbError::Query(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _))
        )
    }
}

pub type DbResult<T> = Result<T, DbError>;

/// Opens connections by URL scheme, so a PostgreSQL URL is never mistaken for a SQLite file name.
#[derive(Debug, Clone)]
pub struct Manager {
    url: String,
}

impl Manager {
    fn sqlite_path(&self) -> Option<&str> {
        self.url.strip_prefix("sqlite://")
    }
}

impl ManageConnection for Manager {
    type Connection = AnyConnection;
    type Error = ConnectionError;

    fn connect(&self) -> Result<AnyConnection, ConnectionError> {
        match self.sqlite_path() {
            Some(path) => {
                let mut conn = SqliteConnection::establish(path)?;
                // WAL lets readers run beside the one writer; busy_timeout queues writers instead
                // of failing them; foreign keys are off by default in SQLite. The file is in WAL
                // already ([`Db::open`] switched it, alone), so this takes no lock.
                conn.batch_execute(SQLITE_PRAGMAS).map_err(ConnectionError::CouldntSetupConfiguration)?;
                Ok(AnyConnection::Sqlite(conn))
            }
            None => Ok(AnyConnection::Postgresql(PgConnection::establish(&self.url)?)),
        }
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), ConnectionError> {
        conn.batch_execute("SELECT 1").map_err(ConnectionError::CouldntSetupConfiguration)
    }

    /// A connection given back mid-transaction (its user panicked) must not be reused: the next
    /// user's `write_tx` would only make a savepoint inside it, and nothing would be committed.
    fn has_broken(&self, conn: &mut AnyConnection) -> bool {
        std::thread::panicking() || in_transaction(conn)
    }
}

const SQLITE_PRAGMAS: &str =
    "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;";

/// Put a SQLite file in WAL mode once, from one connection, before any pool opens. Switching
/// needs an exclusive lock, and two connections switching at once (r2d2 opens a pool's
/// connections in parallel) can be refused `database is locked` at once: SQLite skips the busy
/// handler where waiting could deadlock. WAL is kept in the file, so later switches are no-ops.
fn prepare_sqlite(path: &str) -> DbResult<()> {
    let mut conn = SqliteConnection::establish(path).map_err(|e| DbError::Connect(format!("{path}: {e}")))?;
    conn.batch_execute(SQLITE_PRAGMAS).map_err(|e| DbError::Connect(format!("{path}: WAL mode: {e}")))?;
    Ok(())
}

pub type Pool = r2d2::Pool<Manager>;
pub type PooledConn = r2d2::PooledConnection<Manager>;

/// The database handle shared by the whole process.
///
/// Reads and writes take connections from different pools. On SQLite the write pool has one
/// connection: writers queue in the pool instead of contending for SQLite's lock, where a loser
/// sleeps in the busy handler and throughput collapses under a login storm, and reads (the MQTT
/// auth check) never wait behind writes. On PostgreSQL both are the same pool.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    writer: Pool,
    /// Set on a cabinet owner's handle ([`Db::fenced`]): every write checks it first.
    fence: Option<Arc<Fence>>,
}

/// The ownership epoch a cabinet's owner writes under (the cluster's fencing token, taken with
/// the ownership lease in the cache).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub sn: String,
    pub epoch: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Db {
    /// Open the pool. For SQLite the file's folder is created; PostgreSQL must already exist.
    pub fn open(url: &str, pool_size: u32, connect_timeout: Duration) -> DbResult<Db> {
        let manager = Manager { url: url.to_string() };
        let backend = match manager.sqlite_path() {
            Some(path) => {
                let path = std::path::Path::new(path);
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| DbError::Connect(format!("{}: {e}", dir.display())))?;
                }
                prepare_sqlite(manager.sqlite_path().unwrap_or_default())?;
                Backend::Sqlite
            }
            None => Backend::Postgres,
        };
        let build = |size: u32| {
            r2d2::Pool::builder()
                .max_size(size)
                .connection_timeout(connect_timeout)
                .build(manager.clone())
                .map_err(|e| DbError::Connect(e.to_string()))
        };
        let pool = build(pool_size)?;
        let writer = match backend {
            Backend::Sqlite => build(1)?,
            Backend::Postgres => pool.clone(),
        };
        Ok(Db { pool, writer, fence: None })
    }

    /// This handle, with every write transaction fenced: it first raises the cabinet's stored
    /// epoch to `fence.epoch`, and fails with [`DbError::Fenced`] (writing nothing) when the
    /// stored one is already higher. The row lock it takes is held to the commit, so a new owner
    /// raising the epoch waits for an old owner's write in flight, and sees it.
    pub fn fenced(&self, fence: Fence) -> Db {
        Db { fence: Some(Arc::new(fence)), ..self.clone() }
    }

    /// The fence this handle writes under, if any.
    pub fn fence(&self) -> Option<&Fence> {
        self.fence.as_deref()
    }

    /// Run read-only diesel code on the blocking thread pool.
    pub async fn run<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T, E> + Send + 'static,
    {
        Self::on(self.pool.clone(), f).await
    }

    /// Run diesel code that writes, in one write transaction ([`write_tx`]), on a writer
    /// connection.
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + From<diesel::result::Error> + Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T, E> + Send + 'static,
    {
        let fence = self.fence.clone();
        Self::on(self.writer.clone(), move |c| {
            write_tx(c, |c| {
                if let Some(fence) = &fence {
                    check_fence(c, fence)?;
                }
                f(c)
            })
        })
        .await
    }

    async fn on<T, E, F>(pool: Pool, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T, E> + Send + 'static,
    {
        tokio::task::spawn_blocking(move || {
            let mut conn = pool.get().map_err(DbError::from)?;
            f(&mut conn)
        })
        .await
        .map_err(|_| E::from(DbError::Cancelled))?
    }

    /// A writer connection for blocking callers (migrations, provisioning from the CLI).
    pub fn write_conn(&self) -> DbResult<PooledConn> {
        Ok(self.writer.get()?)
    }

    /// Apply pending migrations; returns the versions applied.
    pub fn migrate(&self) -> DbResult<Vec<String>> {
        let mut conn = self.write_conn()?;
        let applied = match &mut *conn {
            AnyConnection::Postgresql(c) => c.run_pending_migrations(PG_MIGRATIONS).map(versions),
            AnyConnection::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(versions),
        };
        applied.map_err(|e| DbError::Migration(e.to_string()))
    }

    /// A cheap round trip, for `/readyz`.
    pub async fn ping(&self) -> DbResult<()> {
        self.run(|c| c.batch_execute("SELECT 1").map_err(DbError::from)).await
    }
}

fn versions(v: Vec<diesel::migration::MigrationVersion<'_>>) -> Vec<String> {
    v.into_iter().map(|m| m.to_string()).collect()
}

/// Whether a transaction is open on the connection.
pub fn in_transaction(conn: &mut AnyConnection) -> bool {
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    fn depth<C: Connection<TransactionManager = AnsiTransactionManager>>(c: &mut C) -> bool {
        AnsiTransactionManager::transaction_manager_status_mut(c).transaction_depth().map_or(true, |d| d.is_some())
    }
    on_backend!(conn, |c| { depth(c) })
}

/// Run `f` in a write transaction (or a savepoint, when already inside one).
///
/// On SQLite the transaction begins with `BEGIN IMMEDIATE`: a deferred transaction that reads
/// and then writes fails at once with "database is locked" when another connection wrote in
/// between, without waiting for `busy_timeout`; taking the write lock first makes it wait instead.
pub fn write_tx<T, E, F>(conn: &mut AnyConnection, f: F) -> Result<T, E>
where
    E: From<diesel::result::Error>,
    F: FnOnce(&mut AnyConnection) -> Result<T, E>,
{
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    if in_transaction(conn) {
        return conn.transaction(f);
    }
    match conn {
        AnyConnection::Sqlite(c) => AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?,
        AnyConnection::Postgresql(c) => AnsiTransactionManager::begin_transaction(c)?,
    }
    let end = |conn: &mut AnyConnection, commit: bool| -> diesel::QueryResult<()> {
        on_backend!(conn, |c| {
            if commit {
                AnsiTransactionManager::commit_transaction(c)
            } else {
                AnsiTransactionManager::rollback_transaction(c)
            }
        })
    };
    // A rollback that fails leaves the connection broken; the pool drops it (`has_broken`), and
    // the error that caused the rollback is the one worth returning.
    let rollback = |conn: &mut AnyConnection| {
        if let Err(e) = end(conn, false) {
            tracing::warn!(error = %e, "rollback failed; the connection is dropped");
        }
    };
    match f(conn) {
        Ok(value) => match end(conn, true) {
            Ok(()) => Ok(value),
            Err(e) => {
                rollback(conn);
                Err(e.into())
            }
        },
        Err(e) => {
            rollback(conn);
            Err(e)
        }
    }
}

/// Raise the cabinet's stored epoch to the fence's, or fail when it is already higher.
pub fn check_fence(conn: &mut AnyConnection, fence: &Fence) -> DbResult<()> {
    use schema::cabinets::dsl as c;
    let raised = diesel::update(c::cabinets.filter(c::sn.eq(&fence.sn)).filter(c::owner_epoch.le(fence.epoch)))
        .set(c::owner_epoch.eq(fence.epoch))
        .execute(conn)?;
    if raised == 1 {
        return Ok(());
    }
    match c::cabinets.find(&fence.sn).select(c::owner_epoch).first::<i64>(conn).optional()? {
        Some(current) => Err(DbError::Fenced { sn: fence.sn.clone(), epoch: fence.epoch, current }),
        // No such cabinet: nothing to fence; the write finds it missing itself.
        None => Ok(()),
    }
}

/// Now, as stored: UTC without zone.
pub fn now() -> chrono::NaiveDateTime {
    chrono::Utc::now().naive_utc()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh SQLite file is in WAL mode once opened, so a pool's connections opening all at once
    /// (as r2d2 opens them) never race to switch it and none is refused `database is locked`.
    #[test]
    fn a_fresh_sqlite_file_opens_without_lock_races() {
        use diesel::RunQueryDsl;
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("fresh.db").display());
        let db = Db::open(&url, 8, Duration::from_secs(5)).expect("opens");
        let mode: Vec<String> = {
            #[derive(diesel::QueryableByName)]
            struct Mode {
                #[diesel(sql_type = diesel::sql_types::Text)]
                journal_mode: String,
            }
            let mut conn = db.pool.get().expect("connection");
            let rows: Vec<Mode> = diesel::sql_query("PRAGMA journal_mode").load(&mut *conn).expect("pragma");
            rows.into_iter().map(|m| m.journal_mode).collect()
        };
        assert_eq!(mode, ["wal"]);
        let manager = Manager { url };
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let m = manager.clone();
                std::thread::spawn(move || m.connect().map(|_| ()).map_err(|e| e.to_string()))
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().expect("thread"), Ok(()));
        }
    }
}
