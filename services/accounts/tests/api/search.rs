use crate::helpers::*;
use accounts::store::profiles::{search_query, Filter, SearchTerm};
use std::collections::HashSet;

/// Inserts profiles straight into the directory (as the consumer would).
fn seed(platform: &Platform, rows: &[(&str, &str, &str, &str)]) {
    for (email, name, role, status) in rows {
        platform.execute(&format!(
            "INSERT INTO profiles (id, email, display_name, roles, status) VALUES \
             (uuidv7_like(), '{email}', '{name}', ARRAY['{role}'], '{status}')"
        ));
    }
}

fn install_id_function(platform: &Platform) {
    // Time-ordered ids like auth's UUIDv7s, so new rows sort last.
    platform.execute(
        "CREATE OR REPLACE FUNCTION uuidv7_like() RETURNS uuid AS $$ \
         SELECT (lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000000)::bigint), 16, '0') \
                 || substr(md5(random()::text), 1, 16))::uuid $$ LANGUAGE sql",
    );
}

async fn ids(platform: &Platform, token: &str, query: &str) -> Vec<String> {
    let body: serde_json::Value = platform
        .get(&format!("/users?{query}"), token)
        .await
        .json()
        .await
        .unwrap();
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["email"].as_str().unwrap_or("").to_string())
        .collect()
}

#[tokio::test]
async fn search_matches_prefix_and_substring_case_insensitively_with_filters() {
    let platform = spawn().await;
    let admin = platform.admin().await;
    install_id_function(&platform);
    seed(
        &platform,
        &[
            ("grace.hopper@navy.mil", "Grace Hopper", "staff", "active"),
            ("ada@lovelace.org", "Ada Lovelace", "user", "active"),
            ("alan@turing.org", "Alan Turing", "user", "disabled"),
            ("hop_along@example.com", "Cassidy", "user", "active"),
        ],
    );
    let token = &admin.token;
    assert_eq!(
        ids(&platform, token, "q=GRACE").await,
        vec!["grace.hopper@navy.mil"],
        "prefix, any case"
    );
    assert_eq!(
        ids(&platform, token, "q=lovel").await,
        vec!["ada@lovelace.org"],
        "substring of the name"
    );
    assert_eq!(
        ids(&platform, token, "q=turing.org").await,
        vec!["alan@turing.org"],
        "substring of the email"
    );
    assert_eq!(ids(&platform, token, "q=hop").await.len(), 2);
    assert_eq!(
        ids(&platform, token, "q=p_a").await,
        vec!["hop_along@example.com"],
        "_ is literal"
    );
    assert_eq!(
        ids(&platform, token, "q=%25").await,
        Vec::<String>::new(),
        "% is literal"
    );
    assert_eq!(
        ids(&platform, token, "role=staff").await,
        vec!["grace.hopper@navy.mil"]
    );
    assert_eq!(
        ids(&platform, token, "status=disabled").await,
        vec!["alan@turing.org"]
    );
    assert_eq!(
        ids(&platform, token, "q=org&status=active").await,
        vec!["ada@lovelace.org"]
    );
    for bad in [
        "role=wizard",
        "status=gone",
        "limit=0",
        "limit=201",
        "cursor=abc",
        "sort=name",
        "q=ada%00",
        "q=%07bell",
        "q=ad%E2%80%AEa",
    ] {
        let (status, body) = problem(platform.get(&format!("/users?{bad}"), token).await).await;
        assert_eq!(status, 422, "{bad}");
        assert_eq!(
            fields(&body),
            vec![bad.split('=').next().unwrap().to_string()],
            "{bad}"
        );
    }
    // Bytes that are not UTF-8 at all: a 400 naming q, never an empty page.
    let (status, body) = problem(platform.get("/users?q=%FF%FE", token).await).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(fields(&body), vec!["q".to_string()]);
}

#[tokio::test]
async fn pages_have_no_duplicates_or_gaps_while_rows_are_inserted() {
    let platform = spawn().await;
    let admin = platform.admin().await;
    install_id_function(&platform);
    let before: Vec<(String, String)> = (0..25)
        .map(|i| (format!("page{i}@example.com"), format!("Page {i}")))
        .collect();
    for (email, name) in &before {
        seed(&platform, &[(email, name, "user", "active")]);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut inserted = 0;
    loop {
        let query = match &cursor {
            Some(c) => format!("/users?q=page&limit=7&cursor={c}"),
            // An empty cursor is the first page.
            None => "/users?q=page&limit=7&cursor=".to_string(),
        };
        let body: serde_json::Value = platform
            .get(&query, &admin.token)
            .await
            .json()
            .await
            .unwrap();
        for item in body["items"].as_array().unwrap() {
            seen.push(item["email"].as_str().unwrap().to_string());
        }
        // Someone registers between two pages.
        seed(
            &platform,
            &[(
                &format!("page-new{inserted}@example.com"),
                "Page new",
                "user",
                "active",
            )],
        );
        inserted += 1;
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
        assert!(inserted < 50, "pagination never ended");
    }
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no duplicates");
    for (email, _) in &before {
        assert!(unique.contains(email), "{email} was skipped");
    }
}

#[tokio::test]
async fn search_uses_indexes_at_100k_users() {
    let platform = spawn().await;
    platform.execute(
        "INSERT INTO profiles (id, email, display_name, roles) \
         SELECT gen_random_uuid(), 'person' || n || '@example.com', 'Person ' || n, ARRAY['user'] \
         FROM generate_series(1, 100000) AS n; ANALYZE profiles;",
    );
    use diesel::prelude::*;
    let mut conn = platform.db.connect().unwrap();
    // The plan of the query the store runs, for a first page of 50.
    let plan_for = |conn: &mut diesel::PgConnection, term: &str| {
        let filter = Filter {
            q: SearchTerm::parse(term).unwrap(),
            ..Filter::default()
        };
        platform::db::explain(conn, search_query(&filter, None, 51)).unwrap()
    };
    let text = plan_for(&mut conn, "son4242");
    assert!(!text.contains("Seq Scan"), "{text}");
    assert!(
        text.contains("profiles_email_trgm") && text.contains("profiles_name_trgm"),
        "{text}"
    );

    // A term that matches an entry of the planner's histogram still goes to
    // the trigram indexes. With the default 100 entries it was estimated
    // at 1 % of the rows and planned as a walk of the whole primary key.
    #[derive(QueryableByName)]
    struct Bound {
        #[diesel(sql_type = diesel::sql_types::Text)]
        email: String,
    }
    let bound: Bound = diesel::sql_query(
        "SELECT (histogram_bounds::text::text[])[array_length(histogram_bounds::text::text[], 1) / 2] AS email \
         FROM pg_stats WHERE tablename = 'profiles_email_trgm'",
    )
    .get_result(&mut conn)
    .unwrap();
    let text = plan_for(&mut conn, &bound.email);
    assert!(
        text.contains("profiles_email_trgm"),
        "{}: {text}",
        bound.email
    );

    // New rows went into the trigram indexes themselves, not into a GIN
    // pending list that every search would scan until a vacuum.
    #[derive(QueryableByName)]
    struct Pending {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        pending_tuples: i64,
    }
    platform.execute("CREATE EXTENSION IF NOT EXISTS pgstattuple");
    for index in ["profiles_email_trgm", "profiles_name_trgm"] {
        let pending: Pending = diesel::sql_query(format!(
            "SELECT pending_tuples FROM pgstatginindex('{index}')"
        ))
        .get_result(&mut conn)
        .unwrap();
        assert_eq!(pending.pending_tuples, 0, "{index} has a pending list");
    }
}

#[tokio::test]
async fn searches_beyond_the_limit_wait_their_turn() {
    let platform = std::sync::Arc::new(spawn_with(|config| config.search_concurrency = 1).await);
    let admin = platform.admin().await;
    install_id_function(&platform);
    seed(
        &platform,
        &[("wait@example.com", "Waiting Turn", "user", "active")],
    );

    // Hold every search in the database behind a lock.
    use diesel::connection::SimpleConnection;
    let mut blocker = platform.db.connect().unwrap();
    blocker
        .batch_execute("BEGIN; LOCK TABLE profiles IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let searches: Vec<_> = (0..3)
        .map(|_| {
            let platform = platform.clone();
            let token = admin.token.clone();
            tokio::spawn(async move { ids(&platform, &token, "q=turn").await })
        })
        .collect();
    let waiting_on_the_lock = || {
        platform.count(
            "SELECT count(*) AS n FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock' \
             AND query LIKE '%lower(email) LIKE%'",
        )
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while waiting_on_the_lock() < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "no search reached the database"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        waiting_on_the_lock(),
        1,
        "one search at a time in the database"
    );

    blocker.batch_execute("COMMIT").unwrap();
    for search in searches {
        assert_eq!(search.await.unwrap(), vec!["wait@example.com"]);
    }
}
