//! The PostgreSQL backend's pieces that are not a raw baseline: the pool
//! size every PostgreSQL system gets, the throwaway server the driver
//! starts, what the report says about it, and our store as a system.

use session_store_postgres::testing::Cluster;
use session_store_postgres::{PostgresOptions, PostgresStore, TableName};

use crate::proto::Ops;
use crate::systems::BoxError;

/// Connections in the pool of every PostgreSQL system (ours,
/// tower-sessions', raw): 10, sqlx's default `max_connections` and our
/// store's `DEFAULT_MAX_CONNECTIONS`, the same for all three.
pub(crate) const POOL: u32 = 10;

/// The table our store works on.
const OURS_TABLE: &str = "bench_ours";

/// The table the raw baseline works on.
pub(crate) const RAW_TABLE: &str = "bench_raw";

/// Our store on `url` in `table`, installed by the store itself
/// (`migrate(true)`), with a pool of [`POOL`] connections.
pub(crate) async fn connect(url: &str, table: &str) -> Result<PostgresStore, BoxError> {
    Ok(PostgresOptions::new(url)
        .table(TableName::new(table)?)
        .max_connections(POOL)
        .migrate(true)
        .connect()
        .await?)
}

/// `ours-postgres`: our PostgreSQL store on `url`, table
/// [`OURS_TABLE`], through the `SessionStore` trait only.
pub(crate) async fn ours(url: &str) -> Result<(Ops, u64), BoxError> {
    crate::systems::ours(connect(url, OURS_TABLE).await?).await
}

/// The driver's throwaway PostgreSQL cluster: the one our store's test
/// harness starts (`initdb` in a temporary directory, `pg_ctl start` as
/// the `postgres` user when this process is root, a unix socket in that
/// directory and no TCP port; see
/// `session_store_postgres::testing::Cluster` for its settings), stopped
/// and removed when dropped. Not `testing::shared_url()`: that takes
/// `DATABASE_URL` first when it is set, and the benchmark must run on a
/// server of its own, fresh every run; and its cluster lives until the
/// process exits, this one only as long as the PostgreSQL systems run.
pub(crate) fn start_server() -> Result<Cluster, BoxError> {
    Ok(Cluster::start()?)
}

/// The server's version and the settings that decide what a commit costs,
/// as one line for the report, e.g. `PostgreSQL 15.14, fsync on,
/// synchronous_commit on, ...`.
pub(crate) fn describe(url: &str) -> Result<String, BoxError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(url).await?;
        let mut parts = Vec::new();
        for name in [
            "server_version",
            "fsync",
            "synchronous_commit",
            "full_page_writes",
            "shared_buffers",
            "max_connections",
        ] {
            let value: String = sqlx::query_scalar("SELECT current_setting($1)")
                .bind(name)
                .fetch_one(&mut conn)
                .await?;
            parts.push(if name == "server_version" {
                format!("PostgreSQL {value}")
            } else {
                format!("`{name}` {value}")
            });
        }
        conn.close().await?;
        Ok(parts.join(", "))
    })
}
