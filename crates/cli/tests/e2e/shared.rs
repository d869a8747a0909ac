//! Many replicas on one Redis: creators, quotas and revocations shared; a Redis outage failing
//! closed only where a fact is needed, and recovering by itself; brute-force protection.

use super::*;
use invoiceguard_testkit::Redis;

/// Two gateways in front of one upstream, sharing one Redis.
struct Replicas {
    idp: Idp,
    upstream: Upstream,
    redis: Redis,
    a: GatewayProcess,
    b: GatewayProcess,
    /// The replicas' configuration and policy folder, for starting another.
    config: String,
    policies: std::path::PathBuf,
    _dir: TempDir,
}

impl Replicas {
    /// `edit` may change the copied policy folder before the gateways start.
    async fn start(edit: impl Fn(&Path)) -> Self {
        Self::start_with(edit, "").await
    }

    /// Like [`Replicas::start`], with more configuration (a `[limits]` section).
    async fn start_with(edit: impl Fn(&Path), more: &str) -> Self {
        let idp = Idp::start().await.unwrap();
        let upstream = Upstream::start().unwrap();
        let redis = Redis::start().await.unwrap();
        let dir = TempDir::new("replicas").unwrap();
        let policies = super::policy::policy_copy(dir.path());
        edit(&policies);
        let token = dir.path().join("admin-token");
        std::fs::write(&token, "s3cret-admin-token-for-tests\n").unwrap();
        let extra = format!(
            "\n[state]\nbackend = \"redis\"\nurl = \"{}\"\n\n[admin]\naddress = \"127.0.0.1:{{admin_port}}\"\ntoken_file = {token:?}\n",
            redis.url()
        );
        let text = format!(
            "{}{extra}{more}",
            sections(&idp.issuer, &upstream.url(), "")
        );
        let start =
            || GatewayProcess::start_with_policies(Path::new(BINARY), &text, false, &policies, "");
        let a = start().await.unwrap();
        let b = start().await.unwrap();
        Self {
            idp,
            upstream,
            redis,
            a,
            b,
            config: text,
            policies,
            _dir: dir,
        }
    }

    /// Starts one more replica (without waiting for it to be ready: Redis may be down).
    async fn start_another(&self) -> GatewayProcess {
        GatewayProcess::start_with_policies(
            Path::new(BINARY),
            &self.config,
            false,
            &self.policies,
            "",
        )
        .await
        .unwrap()
    }

    async fn token(&self, user: &str) -> String {
        self.idp
            .user_token(user, TokenRequest::default())
            .await
            .unwrap()
    }
}

fn url(gateway: &GatewayProcess, path: &str) -> String {
    format!("{}{path}", gateway.url)
}

/// Five malformed tokens from this address, each refused 401 (and counted against it).
async fn fail_five_times(gateway: &GatewayProcess) {
    for i in 0..5 {
        let reply = get(
            &url(gateway, "/invoices/INV-1"),
            Some(&format!("bad.token.{i}")),
        )
        .await
        .unwrap();
        assert_eq!(reply.status, 401, "attempt {i}");
    }
}

/// Runs `invoiceguard revoke` with `gateway`'s configuration.
fn revoke_cli(gateway: &GatewayProcess, args: &[&str]) -> (bool, String) {
    run(std::process::Command::new(BINARY)
        .args(["revoke", "--config"])
        .arg(gateway.config_file())
        .args(args))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_creators_quotas_and_revocations() {
    // Replica B can only know who created an invoice from the shared record: the lookup no
    // longer says, and approvals need only the creator.
    let replicas = Replicas::start(|policies| {
        let routes = std::fs::read_to_string(policies.join("routes.toml")).unwrap();
        let routes = routes
            .replace("creator = \"/created_by\"\n", "")
            .replace("facts = [\"creator\", \"amount\"]", "facts = [\"creator\"]");
        std::fs::write(policies.join("routes.toml"), routes).unwrap();
        let entities = std::fs::read_to_string(policies.join("entities.toml")).unwrap();
        std::fs::write(
            policies.join("entities.toml"),
            format!("{entities}\n[users.carol]\nexports_per_day = 1\n"),
        )
        .unwrap();
    })
    .await;
    let (a, b) = (&replicas.a, &replicas.b);

    // Grace creates and submits through A; through B she cannot approve her own invoice.
    let grace = replicas.token("grace").await;
    let created = send(request(
        "POST",
        &url(a, "/invoices"),
        Some(&grace),
        Some(json!({"partner_id": "P-1", "amount": 75.0})),
    ))
    .await
    .unwrap();
    assert_eq!(created.status, 201, "{:?}", created.body);
    let id = created.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(
        send(request(
            "POST",
            &url(a, &format!("/invoices/{id}/submit")),
            Some(&grace),
            None
        ))
        .await
        .unwrap()
        .status,
        200
    );
    let own = send(request(
        "POST",
        &url(b, &format!("/invoices/{id}/approve")),
        Some(&grace),
        None,
    ))
    .await
    .unwrap();
    assert_problem(&own, 403);
    assert_eq!(
        b.audit_event(own.header("x-request-id"))["decision"]["policies"],
        json!(["sod.creator-never-approves"])
    );
    let frank = replicas.token("frank").await;
    assert_eq!(
        send(request(
            "POST",
            &url(b, &format!("/invoices/{id}/approve")),
            Some(&frank),
            None
        ))
        .await
        .unwrap()
        .status,
        200
    );
    // An invoice the gateways never saw created: no record, and the lookup cannot say — closed.
    let unknown = send(request(
        "POST",
        &url(b, "/invoices/INV-1/approve"),
        Some(&frank),
        None,
    ))
    .await
    .unwrap();
    assert_problem(&unknown, 503);

    // Carol may export once a day: spent on A, it is spent on B.
    let carol = replicas.token("carol").await;
    assert_eq!(
        send(request(
            "POST",
            &url(a, "/exports"),
            Some(&carol),
            Some(json!({"limit": 10}))
        ))
        .await
        .unwrap()
        .status,
        201
    );
    let second = send(request(
        "POST",
        &url(b, "/exports"),
        Some(&carol),
        Some(json!({"limit": 10})),
    ))
    .await
    .unwrap();
    assert_problem(&second, 403);
    assert_eq!(
        b.audit_event(second.header("x-request-id"))["decision"]["policies"],
        json!(["limits.export-daily-quota"])
    );

    // One revocation, through A's admin listener, blocks alice on both replicas within a second.
    let alice = replicas.token("alice").await;
    assert_eq!(
        get(&url(b, "/invoices/INV-1"), Some(&alice))
            .await
            .unwrap()
            .status,
        200
    );
    let (ok, out) = revoke_cli(
        a,
        &["--subject", "alice", "--reason", "leaver: HR ticket 981"],
    );
    assert!(ok, "{out}");
    let revoked_at = std::time::Instant::now();
    let mut blocked = [false, false];
    while revoked_at.elapsed() < Duration::from_secs(1) && !(blocked[0] && blocked[1]) {
        for (i, gateway) in [a, b].into_iter().enumerate() {
            blocked[i] = blocked[i]
                || get(&url(gateway, "/invoices/INV-1"), Some(&alice))
                    .await
                    .unwrap()
                    .status
                    == 401;
        }
    }
    assert_eq!(
        blocked,
        [true, true],
        "blocked on both replicas within one second"
    );
    let reply = get(&url(b, "/invoices/INV-1"), Some(&alice)).await.unwrap();
    assert_eq!(
        b.audit_event(reply.header("x-request-id"))["decision"]["detail"],
        "revoked"
    );
    let revocation = a
        .audit_events()
        .into_iter()
        .find(|e| e["action"] == "revocation:create")
        .unwrap();
    assert_eq!(
        revocation["resource"],
        json!({"type": "Subject", "id": "alice"})
    );
    assert_eq!(revocation["severity"], "high");
    assert!(
        revocation["decision"]["detail"]
            .as_str()
            .unwrap()
            .contains("leaver: HR ticket 981")
    );
    let (ok, list) = revoke_cli(b, &["--list"]);
    assert!(ok && list.contains("\"subject\":\"alice\""), "{list}");

    let (ok, out) = revoke_cli(b, &["--lift", "alice"]);
    assert!(ok, "{out}");
    // A lift reaches every replica within a second, as a revocation does.
    let lifted = std::time::Instant::now();
    loop {
        let status = get(&url(a, "/invoices/INV-1"), Some(&alice))
            .await
            .unwrap()
            .status;
        if status == 200 {
            break;
        }
        assert_eq!(status, 401);
        assert!(
            lifted.elapsed() < Duration::from_secs(1),
            "A still refuses alice a second after the lift"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        b.audit_events()
            .iter()
            .any(|e| e["action"] == "revocation:lift")
    );

    // Lifting a subject that is not revoked changes nothing: said so, exit non-zero, no event.
    let events_before = b.audit_events().len();
    let (ok, out) = revoke_cli(b, &["--lift", "nobody-revoked"]);
    assert!(
        !ok && out.contains("`nobody-revoked` is not revoked"),
        "{out}"
    );
    assert_eq!(b.audit_events().len(), events_before);

    // The admin endpoints want the admin token; every refusal is on the trail (high), and so
    // is reading the list.
    for token in [Some("wrong-token"), None] {
        let refused = send(request(
            "POST",
            &format!("{}/revocations", a.admin_url),
            token,
            Some(json!({"subject": "alice"})),
        ))
        .await
        .unwrap();
        assert_eq!(refused.status, 401);
    }
    let events = a.audit_events();
    let refusals: Vec<&Value> = events
        .iter()
        .filter(|e| e["category"] == "revocation" && e["decision"]["effect"] == "deny")
        .collect();
    assert_eq!(refusals.len(), 2, "{refusals:?}");
    for (refusal, why) in refusals
        .iter()
        .zip(["bad_admin_token", "missing_admin_token"])
    {
        assert_eq!(refusal["severity"], "high");
        assert_eq!(refusal["actor"], Value::Null);
        assert_eq!(refusal["action"], "revocation:create");
        assert_eq!(refusal["decision"]["reason"], "unauthenticated");
        assert_eq!(refusal["decision"]["detail"], why);
        assert_eq!(refusal["outcome"]["status"], 401);
    }
    let listed = b
        .audit_events()
        .into_iter()
        .find(|e| e["action"] == "revocation:list")
        .expect("reading the list is audited");
    assert_eq!(
        (
            listed["actor"]["type"].as_str(),
            listed["severity"].as_str()
        ),
        (Some("admin"), Some("info"))
    );
    drop(replicas.upstream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_fails_closed_where_facts_are_needed_and_recovers() {
    let mut replicas = Replicas::start(|_| {}).await;
    let a = &replicas.a;
    let (bob, carol, alice) = (
        replicas.token("bob").await,
        replicas.token("carol").await,
        replicas.token("alice").await,
    );
    let (ok, out) = revoke_cli(a, &["--subject", "mallory-leaver"]);
    assert!(ok, "{out}");
    let ready = get(&format!("{}/readyz", a.admin_url), None).await.unwrap();
    assert_eq!(ready.status, 200, "{:?}", ready.body);

    replicas.redis.kill().unwrap();
    let started = std::time::Instant::now();
    // Approvals (the invoice's creator) and exports (the quota) need Redis: 503, at once.
    let approve = send(request(
        "POST",
        &url(a, "/invoices/INV-1/approve"),
        Some(&bob),
        None,
    ))
    .await
    .unwrap();
    assert_problem(&approve, 503);
    let export = send(request(
        "POST",
        &url(a, "/exports"),
        Some(&carol),
        Some(json!({"limit": 5})),
    ))
    .await
    .unwrap();
    assert_problem(&export, 503);
    // So does the rate-limited list route; a read that needs no fact keeps working.
    assert_problem(&get(&url(a, "/invoices"), Some(&alice)).await.unwrap(), 503);
    assert_eq!(
        get(&url(a, "/invoices/INV-1"), Some(&alice))
            .await
            .unwrap()
            .status,
        200
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "no hang: {:?}",
        started.elapsed()
    );
    // Revocations are held in memory: the outage un-blocks nobody.
    let admin_revocations = request(
        "GET",
        &format!("{}/revocations", a.admin_url),
        Some("s3cret-admin-token-for-tests"),
        None,
    );
    assert_eq!(
        send(admin_revocations).await.unwrap().status,
        503,
        "the list itself needs Redis"
    );
    let ready = get(&format!("{}/readyz", a.admin_url), None).await.unwrap();
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json()["state"]["reachable"], false);
    assert!(
        ready.json()["state"]["errors_total"].as_u64().unwrap() >= 3,
        "the outage is counted: {}",
        ready.json()
    );

    replicas.redis.restart().await.unwrap();
    let mut recovered = false;
    for _ in 0..60 {
        let reply = send(request(
            "POST",
            &url(a, "/invoices/INV-1/approve"),
            Some(&bob),
            None,
        ))
        .await
        .unwrap();
        if reply.status != 503 {
            assert_eq!(
                reply.status, 409,
                "INV-1 is a draft: the upstream answers, the decision was made"
            );
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(recovered, "approvals work again without a gateway restart");
    assert_eq!(
        send(request(
            "POST",
            &url(a, "/exports"),
            Some(&carol),
            Some(json!({"limit": 5}))
        ))
        .await
        .unwrap()
        .status,
        201
    );
    assert_eq!(
        get(&format!("{}/readyz", a.admin_url), None)
            .await
            .unwrap()
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_bad_tokens_from_one_address_is_cut_off() {
    let limits = "
[limits]
failed_auth_per_ip = 5
failed_auth_window_s = 60
";
    let world = World::start_with(limits, None, "").await;
    let (gateway, good) = (&world.gateway, world.token("alice").await);
    assert_eq!(
        get(&url(gateway, "/invoices/INV-1"), Some(&good))
            .await
            .unwrap()
            .status,
        200
    );
    fail_five_times(gateway).await;
    let cut = get(&url(gateway, "/invoices/INV-1"), Some("bad.token.6"))
        .await
        .unwrap();
    assert_problem(&cut, 429);
    let retry_after: u64 = cut.header("retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(
        gateway.audit_event(cut.header("x-request-id"))["decision"]["reason"],
        "rate_limited"
    );
    // The address is cut off, whatever it sends, until the window passes.
    assert_problem(
        &get(&url(gateway, "/invoices/INV-1"), Some(&good))
            .await
            .unwrap(),
        429,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lockout_reached_on_one_replica_holds_on_the_other_within_a_second() {
    let limits = "\n[limits]\nfailed_auth_per_ip = 5\nfailed_auth_window_s = 60\n";
    let replicas = Replicas::start_with(|_| {}, limits).await;
    let good = replicas.token("alice").await;
    // B has just checked this address (and may answer from that for a quarter second).
    assert_eq!(
        get(&url(&replicas.b, "/invoices/INV-1"), Some(&good))
            .await
            .unwrap()
            .status,
        200
    );
    fail_five_times(&replicas.a).await;
    let locked_at = std::time::Instant::now();
    assert_problem(
        &get(&url(&replicas.a, "/invoices/INV-1"), Some(&good))
            .await
            .unwrap(),
        429,
    );
    // B refuses the address too, whatever it sends, within a second.
    loop {
        let reply = get(&url(&replicas.b, "/invoices/INV-1"), Some(&good))
            .await
            .unwrap();
        if reply.status == 429 {
            break;
        }
        assert_eq!(reply.status, 200);
        assert!(
            locked_at.elapsed() < Duration::from_secs(1),
            "B still serves the locked address after a second"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("lockout on B after {:?}", locked_at.elapsed());
    // A failure sent to B is counted in Redis and refused at once.
    assert_problem(
        &get(&url(&replicas.b, "/invoices/INV-1"), Some("bad.token.9"))
            .await
            .unwrap(),
        429,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_that_prove_a_subject_lock_it_out_even_with_its_verified_token() {
    let limits = "
[limits]
failed_auth_per_subject = 3
failed_auth_window_s = 60
";
    let world = World::start_with(limits, None, "").await;
    let gateway = &world.gateway;
    let (alice, erin) = (world.token("alice").await, world.token("erin").await);
    // Verified once: from here on alice's token is in the token cache, and the subject it
    // claims is taken from there.
    assert_eq!(
        get(&url(gateway, "/invoices/INV-1"), Some(&alice))
            .await
            .unwrap()
            .status,
        200
    );
    // Alice's claims under a signature that does not verify: they prove nothing about her, and
    // count only against the sender's address.
    let (signed, signature) = alice.rsplit_once('.').unwrap();
    for i in 0..4 {
        let forged = format!("{signed}.{}{i}", &signature[1..]);
        let reply = get(&url(gateway, "/invoices/INV-1"), Some(&forged))
            .await
            .unwrap();
        assert_problem(&reply, 401);
    }
    assert_eq!(
        get(&url(gateway, "/invoices/INV-1"), Some(&alice))
            .await
            .unwrap()
            .status,
        200,
        "forged tokens naming alice locked her out"
    );
    // Tokens the IdP signed for alice, for another API: they prove her, and count against her.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let other_api = world
        .idp
        .sign(
            json!({"typ": "at+jwt"}),
            json!({
                "iss": world.idp.issuer, "sub": "alice", "aud": "urn:other:api", "iat": now,
                "exp": now + 300, "roles": ["invoicing"], "amr": ["pwd", "otp"],
                "client_id": "invoiceguard-demo",
            }),
            None,
        )
        .await
        .unwrap();
    for _ in 0..3 {
        let reply = get(&url(gateway, "/invoices/INV-1"), Some(&other_api))
            .await
            .unwrap();
        assert_problem(&reply, 401);
    }
    let locked = get(&url(gateway, "/invoices/INV-1"), Some(&alice))
        .await
        .unwrap();
    assert_problem(&locked, 429);
    assert_eq!(
        gateway.audit_event(locked.header("x-request-id"))["decision"]["reason"],
        "rate_limited"
    );
    // Only that subject: another user on the same address goes on.
    assert_eq!(
        get(&url(gateway, "/invoices/INV-1"), Some(&erin))
            .await
            .unwrap()
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_rate_limit_holds_each_principal() {
    let dir = TempDir::new("ratelimit").unwrap();
    let policies = super::policy::policy_copy(dir.path());
    let routes = std::fs::read_to_string(policies.join("routes.toml")).unwrap();
    std::fs::write(
        policies.join("routes.toml"),
        routes.replace(
            "rate_limit = { requests = 600, window_s = 60 }",
            "rate_limit = { requests = 3, window_s = 60 }",
        ),
    )
    .unwrap();
    let world = World::start_with("", Some(&policies), "").await;
    let gateway = &world.gateway;
    let (alice, erin) = (world.token("alice").await, world.token("erin").await);
    for _ in 0..3 {
        assert_eq!(
            get(&url(gateway, "/invoices"), Some(&alice))
                .await
                .unwrap()
                .status,
            200
        );
    }
    let limited = get(&url(gateway, "/invoices"), Some(&alice)).await.unwrap();
    assert_problem(&limited, 429);
    assert!(!limited.header("retry-after").is_empty());
    assert_eq!(
        get(&url(gateway, "/invoices"), Some(&erin))
            .await
            .unwrap()
            .status,
        200,
        "per principal"
    );
    assert_eq!(
        get(&url(gateway, "/invoices/INV-1"), Some(&alice))
            .await
            .unwrap()
            .status,
        200,
        "per route"
    );
}

/// The median time of `count` requests to `url` with `token`, each answered `status`.
async fn median_latency(url: &str, token: &str, count: usize, status: u16) -> Duration {
    let mut times = Vec::with_capacity(count);
    for _ in 0..count {
        let started = std::time::Instant::now();
        let reply = get(url, Some(token)).await.unwrap();
        times.push(started.elapsed());
        assert_eq!(reply.status, status, "{:?}", reply.body);
    }
    times.sort();
    times[count / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_born_in_a_redis_outage_lets_nobody_in_and_fact_free_routes_stay_fast() {
    let mut replicas = Replicas::start(|_| {}).await;
    let a = &replicas.a;
    let (alice, dave) = (replicas.token("alice").await, replicas.token("dave").await);
    let (ok, out) = revoke_cli(a, &["--subject", "dave"]);
    assert!(ok, "{out}");
    let read = url(a, "/invoices/INV-1");
    let normal = median_latency(&read, &alice, 60, 200).await;

    // Redis hangs (SIGSTOP): the first call waits for the timeout and marks it down; from then
    // on a read that needs no shared fact costs what it did.
    replicas.redis.pause().unwrap();
    get(&read, Some(&alice)).await.unwrap();
    let hung = median_latency(&read, &alice, 60, 200).await;
    // A replica started now has never read the revocation list: it lets nobody in.
    let c = replicas.start_another().await;
    for token in [&dave, &alice] {
        let reply = get(&url(&c, "/invoices/INV-1"), Some(token)).await.unwrap();
        let problem = assert_problem(&reply, 503);
        assert_eq!(
            problem["type"],
            "urn:invoiceguard:problem:decision-unavailable"
        );
        assert_eq!(reply.header("retry-after"), "1");
        let event = c.audit_event(reply.header("x-request-id"));
        assert_eq!(event["decision"]["effect"], "deny");
        assert!(
            event["decision"]["detail"]
                .as_str()
                .unwrap()
                .contains("revocation list"),
            "{event}"
        );
    }
    let ready = get(&format!("{}/readyz", c.admin_url), None).await.unwrap();
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json()["state"]["revocations_loaded"], false);
    // The replicas that knew the list keep refusing dave.
    assert_eq!(get(&read, Some(&dave)).await.unwrap().status, 401);
    assert_eq!(
        super::sinks::metric(a, "invoiceguard_state_up").await,
        0.0,
        "marked down"
    );

    // Redis goes on: the new replica reads the list and serves, refusing dave.
    replicas.redis.resume().unwrap();
    let mut ready = false;
    for _ in 0..100 {
        if get(&format!("{}/readyz", c.admin_url), None)
            .await
            .unwrap()
            .status
            == 200
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "the new replica became ready once Redis answered");
    assert_eq!(
        get(&url(&c, "/invoices/INV-1"), Some(&dave))
            .await
            .unwrap()
            .status,
        401
    );
    assert_eq!(
        get(&url(&c, "/invoices/INV-1"), Some(&alice))
            .await
            .unwrap()
            .status,
        200
    );
    // A marks Redis up again by its own probe (every 250 ms), not when another replica does:
    // it is read until it says so, within a few probes.
    let mut up = false;
    for _ in 0..50 {
        if super::sinks::metric(a, "invoiceguard_state_up").await == 1.0 {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "A marked Redis up again within 5 s of its resuming");

    // Redis is killed (connections refused): the same.
    replicas.redis.kill().unwrap();
    get(&read, Some(&alice)).await.unwrap();
    let killed = median_latency(&read, &alice, 60, 200).await;
    eprintln!(
        "fact-free read, median of 60: normal {normal:?}, Redis hung {hung:?}, Redis killed {killed:?}"
    );
    // A read that waited on Redis would take its call timeout (`state.timeout_ms`, 500 ms by
    // default) at least; not waiting means far under it, whatever else the machine is doing
    // (this is no speed test: the benches measure speed; a margin over the normal figure was at
    // the mercy of the machine's load).
    let timeout = Duration::from_millis(500);
    for (case, took) in [("hung", hung), ("killed", killed)] {
        assert!(
            took < timeout / 2,
            "Redis {case}: {took:?} (normally {normal:?}): the read waited on Redis"
        );
    }
    assert_eq!(get(&read, Some(&dave)).await.unwrap().status, 401);
}
