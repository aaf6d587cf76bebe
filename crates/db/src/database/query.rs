//! Queries through the handle: built, bound, run on the hot connection,
//! timed per shape (the same code runs them in a transaction).

use super::*;

/// A query being built: SQL and parameters.
#[derive(Debug)]
#[must_use = "a query does nothing until it is executed or fetched"]
pub struct Query<'q> {
    pub(super) db: &'q Database,
    pub(super) sql: &'q str,
    pub(super) args: Vec<Value>,
}

macro_rules! run {
    ($self:ident, $conn:expr, $method:ident) => {{
        let mut q = sqlx::query($self.sql);
        for a in &$self.args {
            q = a.bind(q);
        }
        if $self.db.inner.instrumented.load(Ordering::Relaxed) {
            let entry = $self.db.entry($self.sql);
            let start = Instant::now();
            let result = q.$method($conn).await;
            let elapsed = start.elapsed();
            let written = $self
                .db
                .finish(&entry, elapsed, result.is_ok(), $self.sql, &$self.args);
            (
                result.map_err(|e| $self.db.query_error($self.sql, e)),
                written,
            )
        } else {
            let result = q.$method($conn).await;
            let written = match &result {
                Ok(_) => $self.db.written_table($self.sql),
                Err(_) => None,
            };
            (
                result.map_err(|e| $self.db.query_error($self.sql, e)),
                written,
            )
        }
    }};
}

impl Query<'_> {
    /// Binds the next parameter (`$1`, then `$2`, ...).
    pub fn bind(mut self, value: impl Into<Value>) -> Self {
        self.args.push(value.into());
        self
    }

    /// Binds every value of `values`, in order.
    pub fn bind_all(mut self, values: impl IntoIterator<Item = Value>) -> Self {
        self.args.extend(values);
        self
    }

    /// Every row, each decoded with `FromRow` (derive it with sqlx, or
    /// implement it).
    pub async fn fetch_all_as<T>(self) -> Result<Vec<T>>
    where
        T: for<'r> sqlx::FromRow<'r, AnyRow>,
    {
        let sql = self.sql;
        let db = self.db;
        let rows = self.fetch_all().await?;
        rows.iter()
            .map(|r| T::from_row(r).map_err(|e| db.query_error(sql, e)))
            .collect()
    }
}

/// The methods that run a query: on a connection of the pool for `Query`,
/// on the transaction's for `TxQuery`.
macro_rules! run_methods {
    ($($(#[$doc:meta])* fn $name:ident -> $out:ty = $sqlx:ident $(, $map:expr)?;)*) => {
        impl Query<'_> {
            $(
                $(#[$doc])*
                pub async fn $name(self) -> Result<$out> {
                    let mut conn = self.db.acquire_hot().await?;
                    let (result, written) = run!(self, &mut *conn.conn, $sqlx);
                    self.db.release(conn, result.is_ok());
                    self.db.after_write(written).await;
                    result$(.map($map))?
                }
            )*
        }

        impl TxQuery<'_> {
            $(
                $(#[$doc])*
                pub async fn $name(self) -> Result<$out> {
                    let TxQuery { tx, sql, args } = self;
                    let this = Query { db: &tx.db, sql, args };
                    let (result, written) = run!(this, &mut *tx.conn, $sqlx);
                    // Write hooks run at the commit.
                    tx.written.extend(written);
                    result$(.map($map))?
                }
            )*
        }
    };
}

run_methods! {
    /// Runs the statement; returns the number of rows it changed.
    fn execute -> u64 = execute, |r: sqlx::any::AnyQueryResult| r.rows_affected();
    /// Every row of the result.
    fn fetch_all -> Vec<AnyRow> = fetch_all;
    /// The first row; an error when there is none.
    fn fetch_one -> AnyRow = fetch_one;
    /// The first row, if any.
    fn fetch_optional -> Option<AnyRow> = fetch_optional;
}
