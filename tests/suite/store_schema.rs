//! The SQLite and PostgreSQL migrations are twins: same tables, same columns, same
//! nullability, so a column added to one and forgotten in the other fails here, not in a user's
//! store.

use std::collections::BTreeMap;

use sqlx::Connection;

use crate::support::PgDb;

/// table → column → nullable.
type Schema = BTreeMap<String, BTreeMap<String, bool>>;

async fn sqlite_schema(path: &std::path::Path) -> Schema {
    let url = format!("sqlite://{}", path.display());
    let mut c = sqlx::SqliteConnection::connect(&url).await.expect("open");
    let tables: Vec<(String,)> = sqlx::query_as(
        "SELECT name FROM sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_sqlx_%'",
    )
    .fetch_all(&mut c)
    .await
    .expect("tables");
    let mut out = Schema::new();
    for (table,) in tables {
        // (cid, name, type, notnull, default, pk)
        let cols: Vec<(i64, String, String, i64, Option<String>, i64)> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("PRAGMA table_info({table})")))
                .fetch_all(&mut c)
                .await
                .expect("columns");
        out.insert(
            table,
            cols.into_iter()
                .map(|(_, name, _, notnull, _, pk)| (name, notnull == 0 && pk == 0))
                .collect(),
        );
    }
    out
}

async fn postgres_schema(url: &str) -> Schema {
    let mut c = sqlx::PgConnection::connect(url).await.expect("open");
    let cols: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, is_nullable::text \
         FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name NOT LIKE '\\_sqlx\\_%'",
    )
    .fetch_all(&mut c)
    .await
    .expect("columns");
    let mut out = Schema::new();
    for (table, column, nullable) in cols {
        out.entry(table)
            .or_default()
            .insert(column, nullable == "YES");
    }
    out
}

#[tokio::test]
async fn sqlite_and_postgres_migrations_define_the_same_columns() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("twin.db");
    boocoder::store::Store::open_sqlite(&path)
        .await
        .expect("sqlite migrations")
        .close()
        .await;
    let pg = PgDb::create().await;
    boocoder::store::Store::open_postgres(&pg.url)
        .await
        .expect("postgres migrations")
        .close()
        .await;
    let (lite, post) = (sqlite_schema(&path).await, postgres_schema(&pg.url).await);
    assert!(lite.contains_key("pending_changes"), "{lite:?}");
    let tables = |s: &Schema| s.keys().cloned().collect::<Vec<_>>();
    assert_eq!(tables(&lite), tables(&post), "the same tables");
    for (table, columns) in &lite {
        assert_eq!(
            Some(columns),
            post.get(table),
            "table `{table}`: columns and nullability differ (SQLite left, PostgreSQL right)"
        );
    }
}
