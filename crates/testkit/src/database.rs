//! A database per test, created from a template that is migrated once per
//! migration set (the template's name carries a hash of the migrations, so
//! concurrent test processes share it and a changed migration makes a new
//! one). Databases are dropped when the test ends; leftovers of crashed runs
//! older than an hour are swept when a template is first prepared.

use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::Text;
use platform::db::quote_ident;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

pub struct TestDatabase {
    name: String,
    url: String,
}

#[derive(QueryableByName)]
struct DbName {
    #[diesel(sql_type = Text)]
    datname: String,
}

/// Tests talk to a local server: no TLS. Besides being pointless on
/// loopback, libpq's OpenSSL teardown at process exit races with pool
/// threads still connecting and can abort the test binary.
fn database_url(name: &str) -> String {
    format!("{}/{}?sslmode=disable", crate::postgres_server_url(), name)
}

fn admin_connection() -> anyhow::Result<PgConnection> {
    let url = database_url("postgres");
    PgConnection::establish(&url)
        .map_err(|err| anyhow::anyhow!("cannot reach PostgreSQL at {url}: {err}"))
}

fn exists(conn: &mut PgConnection, name: &str) -> anyhow::Result<bool> {
    let rows: Vec<DbName> = diesel::sql_query("SELECT datname FROM pg_database WHERE datname = $1")
        .bind::<Text, _>(name)
        .load(conn)?;
    Ok(!rows.is_empty())
}

/// FNV-1a over the migration files, in name order.
fn migrations_hash(dir: &Path) -> anyhow::Result<String> {
    let mut files = Vec::new();
    for entry in walk(dir)? {
        files.push((entry.display().to_string(), std::fs::read(&entry)?));
    }
    files.sort();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (name, content) in files {
        for byte in name.bytes().chain(content) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    Ok(format!("{hash:016x}"))
}

fn walk(dir: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            out.extend(walk(&path)?);
        } else {
            out.push(path);
        }
    }
    Ok(out)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl TestDatabase {
    /// A fresh database for `service`, migrated by `migrate` (run once, on
    /// the template).
    pub fn create<F>(service: &str, migrations_dir: &Path, migrate: F) -> anyhow::Result<Self>
    where
        F: FnOnce(&mut PgConnection) -> anyhow::Result<()>,
    {
        let template = format!("tpl_{service}_{}", migrations_hash(migrations_dir)?);
        let mut admin = admin_connection()?;
        // Serialise template creation across test processes.
        diesel::sql_query("SELECT pg_advisory_lock(727274)").execute(&mut admin)?;
        let prepared = Self::prepare_template(&mut admin, service, &template, migrate);
        diesel::sql_query("SELECT pg_advisory_unlock(727274)").execute(&mut admin)?;
        prepared?;

        let name = format!(
            "t_{service}_{}_{}",
            unix_now(),
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        diesel::sql_query(format!(
            "CREATE DATABASE {} TEMPLATE {}",
            quote_ident(&name),
            quote_ident(&template)
        ))
        .execute(&mut admin)?;
        let url = database_url(&name);
        Ok(Self { name, url })
    }

    fn prepare_template<F>(
        admin: &mut PgConnection,
        service: &str,
        template: &str,
        migrate: F,
    ) -> anyhow::Result<()>
    where
        F: FnOnce(&mut PgConnection) -> anyhow::Result<()>,
    {
        if exists(admin, template)? {
            return Ok(());
        }
        sweep(admin, service)?;
        let building = format!("{template}_building");
        diesel::sql_query(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(&building)
        ))
        .execute(admin)?;
        diesel::sql_query(format!("CREATE DATABASE {}", quote_ident(&building))).execute(admin)?;
        {
            let url = database_url(&building);
            let mut conn = PgConnection::establish(&url)?;
            migrate(&mut conn)?;
        }
        diesel::sql_query(format!(
            "ALTER DATABASE {} RENAME TO {}",
            quote_ident(&building),
            quote_ident(template)
        ))
        .execute(admin)?;
        Ok(())
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn connect(&self) -> anyhow::Result<PgConnection> {
        PgConnection::establish(&self.url).map_err(Into::into)
    }

    /// The value of a query that selects one `bigint` named `n`
    /// (`SELECT count(*) AS n ...`); panics, as a test should, if it fails.
    pub fn count(&self, sql: &str) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let counted = self.connect().and_then(|mut conn| {
            diesel::sql_query(sql)
                .get_result::<Count>(&mut conn)
                .map_err(Into::into)
        });
        match counted {
            Ok(count) => count.n,
            Err(err) => panic!("{sql}: {err}"),
        }
    }

    /// Runs statements; panics, as a test should, if they fail.
    pub fn execute(&self, sql: &str) {
        use diesel::connection::SimpleConnection;
        let done = self
            .connect()
            .and_then(|mut conn| conn.batch_execute(sql).map_err(Into::into));
        if let Err(err) = done {
            panic!("{sql}: {err}");
        }
    }
}

/// Drops this service's stale templates and test databases left by crashed
/// runs more than an hour ago.
fn sweep(admin: &mut PgConnection, service: &str) -> anyhow::Result<()> {
    let rows: Vec<DbName> = diesel::sql_query(
        "SELECT datname FROM pg_database WHERE datname LIKE $1 OR datname LIKE $2",
    )
    .bind::<Text, _>(format!("t\\_{service}\\_%"))
    .bind::<Text, _>(format!("tpl\\_{service}\\_%"))
    .load(admin)?;
    let cutoff = unix_now().saturating_sub(3600);
    for row in rows {
        let stale = if row.datname.starts_with("tpl_") {
            true
        } else {
            row.datname
                .split('_')
                .nth(2)
                .and_then(|ts| ts.parse::<u64>().ok())
                .is_some_and(|ts| ts < cutoff)
        };
        if stale {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(&row.datname)
            ))
            .execute(admin);
        }
    }
    Ok(())
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Ok(mut admin) = admin_connection() {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(&self.name)
            ))
            .execute(&mut admin);
        }
    }
}
