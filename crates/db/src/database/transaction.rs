//! Transactions: queries on one connection, then commit or rollback.

use super::*;

/// A transaction: queries on one connection, then [`commit`](Self::commit)
/// or [`rollback`](Self::rollback). Dropped without either, the connection
/// is closed instead of returned, so the server rolls back.
pub struct Transaction {
    pub(super) db: Database,
    pub(super) conn: PoolConnection<Any>,
    pub(super) open: bool,
    /// Tables written, for the write hooks at commit.
    pub(super) written: Vec<String>,
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("open", &self.open)
            .finish()
    }
}

/// A query inside a [`Transaction`].
#[derive(Debug)]
#[must_use = "a query does nothing until it is executed or fetched"]
pub struct TxQuery<'t> {
    pub(super) tx: &'t mut Transaction,
    pub(super) sql: &'t str,
    pub(super) args: Vec<Value>,
}

impl Transaction {
    /// A query on the transaction's connection.
    pub fn query<'t>(&'t mut self, sql: &'t str) -> TxQuery<'t> {
        TxQuery {
            tx: self,
            sql,
            args: Vec::new(),
        }
    }

    /// Commits.
    pub async fn commit(mut self) -> Result<()> {
        self.run_raw("COMMIT").await?;
        self.open = false;
        let mut written = std::mem::take(&mut self.written);
        written.sort();
        written.dedup();
        for table in written {
            self.db.after_write(Some(table)).await;
        }
        Ok(())
    }

    /// Rolls back.
    pub async fn rollback(mut self) -> Result<()> {
        self.run_raw("ROLLBACK").await?;
        self.open = false;
        Ok(())
    }

    pub(super) async fn run_raw(&mut self, sql: &'static str) -> Result<()> {
        self.conn
            .execute(sql)
            .await
            .map(drop)
            .map_err(|e| self.db.query_error(sql, e))
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if self.open {
            // Not committed: do not hand a connection inside a transaction
            // back to the pool.
            self.conn.close_on_drop();
        }
    }
}

impl TxQuery<'_> {
    /// Binds the next parameter.
    pub fn bind(mut self, value: impl Into<Value>) -> Self {
        self.args.push(value.into());
        self
    }
}
