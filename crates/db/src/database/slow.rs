//! The slow-query log: a query over `slow_query` is logged once per
//! shape and interval, with its plan fetched in the background.

use super::*;

impl Database {
    pub(super) fn slow(
        &self,
        entry: &Arc<QueryEntry>,
        elapsed: Duration,
        sql: &str,
        args: &[Value],
    ) {
        let interval = self.inner.settings.slow_query_log_interval;
        {
            let mut last = entry.last_slow_log.lock();
            if last.is_some_and(|t| t.elapsed() < interval) {
                return;
            }
            *last = Some(Instant::now());
        }
        m::slow_query(&self.inner.bot);
        let explain = self.inner.settings.explain_slow_queries
            && self.inner.backend == Backend::Postgres
            && entry.fingerprint.kind == StatementKind::Read;
        if !explain {
            log_slow(&self.inner.bot, &entry.fingerprint, elapsed, None);
            return;
        }
        let db = self.clone();
        let entry = entry.clone();
        let sql = format!("EXPLAIN {sql}");
        let args = args.to_vec();
        tokio::spawn(async move {
            let plan = match db.explain_raw(&sql, &args).await {
                Ok(plan) => plan,
                Err(e) => format!("(no plan: {e})"),
            };
            log_slow(&db.inner.bot, &entry.fingerprint, elapsed, Some(&plan));
        });
    }

    /// Runs `EXPLAIN ...` (given whole) and returns its lines, without
    /// recording it as a query of the bot.
    pub(crate) async fn explain_raw(&self, explain_sql: &str, args: &[Value]) -> Result<String> {
        let mut conn = self.acquire().await?;
        let mut q = sqlx::query(explain_sql);
        for a in args {
            q = a.bind(q);
        }
        let rows = q
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| self.query_error(explain_sql, e))?;
        let lines: Vec<String> = rows
            .iter()
            .filter_map(|r| sqlx::Row::try_get::<String, _>(r, 0).ok())
            .collect();
        Ok(lines.join("\n"))
    }
}

/// One slow-query log line, with the plan when there is one.
pub(super) fn log_slow(
    bot: &str,
    fingerprint: &Fingerprint,
    elapsed: Duration,
    plan: Option<&str>,
) {
    tracing::warn!(
        target: "botfleet_db::slow",
        bot = %bot,
        query = %fingerprint.text,
        id = %fingerprint.id_hex(),
        duration_ms = elapsed.as_secs_f64() * 1e3,
        plan = plan.map(tracing::field::display),
        "slow query"
    );
}
