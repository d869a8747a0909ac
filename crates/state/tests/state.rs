//! The same behaviour from both backends: `memory`, and `redis` against a real `redis-server`.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail at the first broken step"
)]

use std::time::Duration;

use invoiceguard_state::{
    ExportLimits, RecordKind, ReserveOutcome, StateConfig, StateStore, Table,
};
use invoiceguard_testkit::Redis;

const LIMITS: ExportLimits = ExportLimits {
    rows_per_day: 1000,
    exports_per_day: 3,
};

fn memory() -> StateStore {
    StateStore::open(&StateConfig::default()).unwrap()
}

fn redis(server: &Redis) -> StateStore {
    let config = StateConfig {
        backend: "redis".into(),
        url: Some(server.url()),
        key_prefix: format!("test-{}:", std::process::id()),
        ..StateConfig::default()
    };
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    StateStore::open(&config).unwrap()
}

/// Records: kept, read, taken once, used once, indexed, expired.
async fn keeps_records(store: &StateStore) {
    let minute = Duration::from_secs(60);
    store
        .put_record(RecordKind::Session, "h1", "{\"sub\":\"alice\"}", minute)
        .await
        .unwrap();
    assert_eq!(
        store
            .get_record(RecordKind::Session, "h1")
            .await
            .unwrap()
            .as_deref(),
        Some("{\"sub\":\"alice\"}")
    );
    assert_eq!(
        store.get_record(RecordKind::Login, "h1").await.unwrap(),
        None
    );
    store
        .put_record(RecordKind::Login, "state-1", "pending", minute)
        .await
        .unwrap();
    assert_eq!(
        store
            .take_record(RecordKind::Login, "state-1")
            .await
            .unwrap()
            .as_deref(),
        Some("pending")
    );
    assert_eq!(
        store
            .take_record(RecordKind::Login, "state-1")
            .await
            .unwrap(),
        None
    );
    assert!(
        store
            .first_use(RecordKind::Used, "jti-1", minute)
            .await
            .unwrap()
    );
    assert!(
        !store
            .first_use(RecordKind::Used, "jti-1", minute)
            .await
            .unwrap()
    );
    store.index_add("sub:alice", "h1", minute).await.unwrap();
    store.index_add("sub:alice", "h2", minute).await.unwrap();
    store.index_add("sub:alice", "h3", minute).await.unwrap();
    store.index_remove("sub:alice", "h3").await.unwrap();
    let mut listed = store.index_members("sub:alice").await.unwrap();
    listed.sort();
    assert_eq!(listed, ["h1", "h2"], "listed, left in place");
    let mut members = store.index_take("sub:alice").await.unwrap();
    members.sort();
    assert_eq!(members, ["h1", "h2"]);
    assert!(store.index_take("sub:alice").await.unwrap().is_empty());
    assert!(
        store
            .delete_record(RecordKind::Session, "h1")
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_record(RecordKind::Session, "h1")
            .await
            .unwrap()
    );
    store
        .put_record(RecordKind::Session, "short", "x", Duration::from_millis(50))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(
        store
            .get_record(RecordKind::Session, "short")
            .await
            .unwrap(),
        None
    );
}

/// Tables every replica keeps whole, announced when they change; roles seen, swapped once.
async fn keeps_tables(store: &StateStore) {
    let changes = store.revocation_changes();
    let announced = changes.notified();
    tokio::pin!(announced);
    announced.as_mut().enable();
    store
        .table_put(Table::Grants, "g1", "{\"role\":\"approver\"}")
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(2), announced)
        .await
        .expect("a table change is announced like a revocation");
    store
        .table_put(Table::Lifecycle, "ann", "{}")
        .await
        .unwrap();
    let grants = store.table_all(Table::Grants).await.unwrap();
    assert_eq!(
        grants.get("g1").map(String::as_str),
        Some("{\"role\":\"approver\"}")
    );
    assert_eq!(grants.len(), 1, "tables are apart");
    assert!(store.table_remove(Table::Grants, "g1").await.unwrap());
    assert!(
        !store.table_remove(Table::Grants, "g1").await.unwrap(),
        "removed once"
    );
    assert!(store.table_all(Table::Grants).await.unwrap().is_empty());
    // Roles seen: first sight is no change; a change is told once; an older token is not news.
    let seen = |roles: &'static str, at: u64| store.roles_seen("ann", roles, at);
    assert_eq!(seen("invoicing", 100).await.unwrap(), None);
    assert_eq!(seen("invoicing", 110).await.unwrap(), None);
    assert_eq!(
        seen("approver invoicing", 120).await.unwrap().as_deref(),
        Some("invoicing")
    );
    assert_eq!(seen("approver invoicing", 120).await.unwrap(), None);
    assert_eq!(seen("invoicing", 105).await.unwrap(), None);
    assert_eq!(
        store.roles_of("ann").await.unwrap().as_deref(),
        Some("approver invoicing")
    );
    assert_eq!(store.roles_of("nobody").await.unwrap(), None);
}

async fn behaves(store: &StateStore) {
    keeps_records(store).await;
    keeps_tables(store).await;
    store.ping().await.unwrap();
    // Ownership.
    assert_eq!(store.owner("INV-1").await.unwrap(), None);
    store.record_owner("INV-1", "alice").await.unwrap();
    assert_eq!(
        store.owner("INV-1").await.unwrap().as_deref(),
        Some("alice")
    );

    // Exports: reserve, settle, release, limits.
    let ReserveOutcome::Reserved(a) = store
        .reserve_export("carol", Some(600), LIMITS)
        .await
        .unwrap()
    else {
        panic!("refused")
    };
    assert!(matches!(
        store
            .reserve_export("carol", Some(600), LIMITS)
            .await
            .unwrap(),
        ReserveOutcome::OverLimit {
            rows_used: 600,
            exports_used: 1
        }
    ));
    store.settle_export(&a, 100).await.unwrap();
    let ReserveOutcome::Reserved(b) = store
        .reserve_export("carol", Some(600), LIMITS)
        .await
        .unwrap()
    else {
        panic!("refused")
    };
    store.release_export(&b).await.unwrap();
    let ReserveOutcome::Reserved(rest) = store.reserve_export("carol", None, LIMITS).await.unwrap()
    else {
        panic!("refused")
    };
    assert_eq!(rest.rows, 900, "an unbounded export reserves what is left");
    assert!(matches!(
        store
            .reserve_export("carol", Some(0), LIMITS)
            .await
            .unwrap(),
        ReserveOutcome::OverLimit { .. }
    ));
    assert!(
        matches!(
            store.reserve_export("dave", Some(1), LIMITS).await.unwrap(),
            ReserveOutcome::Reserved(_)
        ),
        "quotas are per principal"
    );

    // Revocations, and their change notification.
    let changes = store.revocation_changes();
    let notified = changes.notified();
    store.revoke("mallory", 0).await.unwrap();
    tokio::time::timeout(Duration::from_secs(2), notified)
        .await
        .expect("a revocation notifies");
    store.revoke("temp", 4_000_000_000).await.unwrap();
    let revoked = store.revocations().await.unwrap();
    assert_eq!(revoked.get("mallory"), Some(&0));
    assert_eq!(revoked.get("temp"), Some(&4_000_000_000));
    store.lift("mallory").await.unwrap();
    assert!(!store.revocations().await.unwrap().contains_key("mallory"));

    // Sliding-window limits.
    let window = Duration::from_millis(300);
    assert!(
        store
            .limit("ip:192.0.2.1", 2, window, true)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .limit("ip:192.0.2.1", 2, window, false)
            .await
            .unwrap()
            .is_none(),
        "a check does not count"
    );
    assert!(
        store
            .limit("ip:192.0.2.1", 2, window, true)
            .await
            .unwrap()
            .is_none()
    );
    let wait = store
        .limit("ip:192.0.2.1", 2, window, true)
        .await
        .unwrap()
        .unwrap();
    assert!(wait <= window, "{wait:?}");
    tokio::time::sleep(window).await;
    assert!(
        store
            .limit("ip:192.0.2.1", 2, window, true)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn the_memory_backend_behaves() {
    behaves(&memory()).await;
}

#[tokio::test]
async fn the_redis_backend_behaves_the_same() {
    let server = Redis::start().await.unwrap();
    behaves(&redis(&server)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reservations_on_redis_are_atomic() {
    let server = Redis::start().await.unwrap();
    let store = std::sync::Arc::new(redis(&server));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                matches!(
                    store
                        .reserve_export(
                            "carol",
                            Some(400),
                            ExportLimits {
                                rows_per_day: 1000,
                                exports_per_day: 100
                            }
                        )
                        .await
                        .unwrap(),
                    ReserveOutcome::Reserved(_)
                )
            })
        })
        .collect();
    let mut granted = 0;
    for task in tasks {
        granted += usize::from(task.await.unwrap());
    }
    assert_eq!(granted, 2);
}

#[tokio::test]
async fn a_redis_outage_is_an_error_within_the_timeout_and_recovers() {
    let mut server = Redis::start().await.unwrap();
    let store = redis(&server);
    store.record_owner("INV-9", "grace").await.unwrap();
    server.kill().unwrap();
    let started = std::time::Instant::now();
    assert!(store.owner("INV-9").await.is_err());
    assert!(
        store
            .reserve_export("carol", Some(1), LIMITS)
            .await
            .is_err()
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "every call has a timeout: {:?}",
        started.elapsed()
    );
    // Marked down: the next calls fail at once, without trying.
    let errors = store.errors();
    let fast = std::time::Instant::now();
    for _ in 0..100 {
        assert!(
            store
                .limit("k", 5, Duration::from_secs(60), true)
                .await
                .is_err()
        );
    }
    assert!(
        fast.elapsed() < Duration::from_millis(500),
        "not one of them waited for the timeout (500 ms): {:?} for 100 calls",
        fast.elapsed()
    );
    assert_eq!(store.errors(), errors + 100, "each is counted");
    server.restart().await.unwrap();
    let mut recovered = false;
    for _ in 0..50 {
        if store.owner("INV-1").await.is_ok() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "the probe marks the store up again by itself");
    store.record_owner("INV-10", "grace").await.unwrap();
    assert_eq!(
        store.owner("INV-10").await.unwrap().as_deref(),
        Some("grace")
    );
}

fn redis_config(urls: impl FnOnce(&mut StateConfig)) -> StateConfig {
    let mut config = StateConfig {
        backend: "redis".into(),
        key_prefix: format!("test-{}:", std::process::id()),
        ..StateConfig::default()
    };
    urls(&mut config);
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    config
}

#[tokio::test]
async fn the_redis_backend_behaves_with_an_acl_user_and_a_password_file() {
    let server = Redis::start_with(&[
        "--user",
        "gateway",
        "on",
        ">gw-pass-7",
        "~*",
        "&*",
        "+@all",
        "--user",
        "default",
        "off",
    ])
    .await
    .unwrap();
    let password = server.dir().join("password");
    std::fs::write(&password, "gw-pass-7\n").unwrap();
    let config = redis_config(|c| {
        c.url = Some(server.url());
        c.username = Some("gateway".into());
        c.password_file = Some(password.clone());
    });
    behaves(&StateStore::open(&config).unwrap()).await;

    std::fs::write(&password, "wrong").unwrap();
    let refused = StateStore::open(&config).unwrap();
    assert!(
        refused.ping().await.is_err(),
        "a wrong password is no access"
    );
}

#[tokio::test]
async fn the_redis_backend_behaves_over_tls() {
    let dir = invoiceguard_testkit::TempDir::new("redis-tls").unwrap();
    let (ca, cert, key) = invoiceguard_testkit::certificates(dir.path()).unwrap();
    let (ca_s, cert_s, key_s) = (
        ca.to_str().unwrap(),
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
    );
    let server = Redis::start_with(&[
        "--tls-port",
        "{port}",
        "--tls-cert-file",
        cert_s,
        "--tls-key-file",
        key_s,
        "--tls-ca-cert-file",
        ca_s,
        "--tls-auth-clients",
        "no",
    ])
    .await
    .unwrap();
    let config = redis_config(|c| {
        c.url = Some(format!("rediss://localhost:{}", server.port));
        c.ca_file = Some(ca.clone());
    });
    behaves(&StateStore::open(&config).unwrap()).await;

    let untrusted = redis_config(|c| c.url = Some(format!("rediss://localhost:{}", server.port)));
    assert!(
        StateStore::open(&untrusted).unwrap().ping().await.is_err(),
        "a server the CA did not sign is refused"
    );
}

#[tokio::test]
async fn the_redis_backend_behaves_behind_sentinel() {
    let master = Redis::start().await.unwrap();
    let sentinel = Redis::start_sentinel(master.port).await.unwrap();
    let config = redis_config(|c| {
        c.sentinels = vec![sentinel.url()];
        c.sentinel_master = Some("mymaster".into());
    });
    behaves(&StateStore::open(&config).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_backend_behaves_on_a_cluster() {
    let cluster = invoiceguard_testkit::RedisCluster::start().await.unwrap();
    let config = redis_config(|c| c.cluster_nodes = cluster.urls());
    behaves(&StateStore::open(&config).unwrap()).await;
}
