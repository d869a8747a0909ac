//! Joiners, movers and leavers through the real IdP as a Shared Signals transmitter (its CAEP and
//! RISC events signed and pushed, or polled), two replicas on one Redis, and the `invoiceguard
//! grant` command: a leaver refused on every replica within a second of the IdP's event, bad
//! security events refused and audited, a fresh login or a step-up required when the IdP says so,
//! a grant that stops by itself, grants the policies refuse, and a role change seen once.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use invoiceguard_testkit::Redis;
use serde_json::{Value, json};

use super::*;

/// An `[ssf]` section receiving from `idp` by `delivery`, its token files in `dir`.
fn ssf_section(idp: &Idp, dir: &Path, delivery: &str) -> String {
    let (token, audience) = Idp::ssf_receiver().unwrap();
    let token_file = dir.join("ssf-token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let push_auth = dir.join("ssf-push-authorization");
    std::fs::write(&push_auth, "Bearer push-secret-7d41\n").unwrap();
    format!(
        "\n[ssf]\ntransmitter = \"{}\"\naudience = \"{audience}\"\ndelivery = \"{delivery}\"\n\
         push_url = \"http://127.0.0.1:{{port}}/.invoiceguard/ssf/events\"\n\
         bearer_token_file = {token_file:?}\npush_authorization_file = {push_auth:?}\n\
         poll_interval_ms = 200\n",
        idp.issuer
    )
}

/// Waits until the gateway's stream is set up and verified by the transmitter's verification
/// event (its readiness report says).
pub(crate) async fn wait_verified(gateway: &GatewayProcess) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let report = get(&format!("{}/readyz", gateway.admin_url), None)
            .await
            .unwrap()
            .json();
        if report["ssf"]["verified"] == true {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the security event stream was not verified: {report}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The status of a GET of `/invoices` with `token`.
async fn status(gateway: &GatewayProcess, token: &str) -> u16 {
    get(&format!("{}/invoices", gateway.url), Some(token))
        .await
        .unwrap()
        .status
}

/// The request ids a Sigma rule of `deploy/siem/rules` fires on in a gateway's trail.
fn fired(gateway: &GatewayProcess, rule: &str) -> std::collections::BTreeSet<String> {
    super::siem::run_rules(gateway)[rule]["matched"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect()
}

/// The request ids of a trail's events that `pick` picks.
fn ids(events: &[Value], pick: impl Fn(&Value) -> bool) -> std::collections::BTreeSet<String> {
    events
        .iter()
        .filter(|e| pick(e))
        .map(|e| e["request_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Checks events against the documented JSON Schema.
fn assert_valid(events: &[Value]) {
    let schema = super::schema::audit_event_schema();
    for event in events {
        let problems = super::schema::violations(&schema, event);
        assert!(problems.is_empty(), "{event}: {problems:?}");
    }
}

/// Every event of both replicas.
fn all_events(gateways: &[&GatewayProcess]) -> Vec<Value> {
    gateways.iter().flat_map(|g| g.audit_events()).collect()
}

/// Two replicas on one Redis, receiving security events (when `delivery` is given) and with an
/// admin listener each.
struct Replicas {
    idp: Idp,
    _upstream: Upstream,
    _redis: Redis,
    a: GatewayProcess,
    b: GatewayProcess,
    dir: TempDir,
}

impl Replicas {
    async fn start(delivery: Option<&str>) -> Self {
        let idp = Idp::start().await.unwrap();
        let upstream = Upstream::start().unwrap();
        let redis = Redis::start().await.unwrap();
        let dir = TempDir::new("lifecycle").unwrap();
        let token = dir.path().join("admin-token");
        std::fs::write(&token, "s3cret-admin-token-for-tests\n").unwrap();
        let ssf = delivery.map_or_else(String::new, |d| ssf_section(&idp, dir.path(), d));
        let text = format!(
            "{}\n[state]\nbackend = \"redis\"\nurl = \"{}\"\n\n[admin]\naddress = \"127.0.0.1:{{admin_port}}\"\ntoken_file = {token:?}\n{ssf}",
            sections(&idp.issuer, &upstream.url(), ""),
            redis.url()
        );
        let a = GatewayProcess::start(Path::new(BINARY), &text, false)
            .await
            .unwrap();
        let b = GatewayProcess::start(Path::new(BINARY), &text, false)
            .await
            .unwrap();
        if delivery.is_some() {
            wait_verified(&a).await;
            wait_verified(&b).await;
        }
        Self {
            idp,
            _upstream: upstream,
            _redis: redis,
            a,
            b,
            dir,
        }
    }

    async fn token(&self, user: &str) -> String {
        self.idp
            .user_token(user, TokenRequest::default())
            .await
            .unwrap()
    }

    /// Runs `invoiceguard grant` against replica A with `granter`'s token.
    fn grant(&self, granter: Option<&str>, args: &[&str]) -> (bool, String) {
        let mut command = std::process::Command::new(BINARY);
        command
            .args(["grant", "--config"])
            .arg(self.a.config_file())
            .args(args)
            .env_remove("INVOICEGUARD_TOKEN");
        if let Some(token) = granter {
            let file: PathBuf = self.dir.path().join("granter-token");
            std::fs::write(&file, token).unwrap();
            command.arg("--token-file").arg(file);
        }
        run(&mut command)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaver_disabled_at_the_idp_is_refused_on_every_replica_within_a_second() {
    let world = Replicas::start(Some("push")).await;
    let (a, b) = (&world.a, &world.b);
    let alice = world.token("alice").await;
    let bob = world.token("bob").await;
    assert_eq!(status(a, &alice).await, 200);
    assert_eq!(status(b, &alice).await, 200);

    // The IdP disables alice: each replica's stream gets the event pushed, and both refuse her
    // token within a second (measured by polling every 20 ms).
    let started = Instant::now();
    let sent = world
        .idp
        .ssf_emit(json!({"event": "account-disabled", "user": "alice",
            "payload": {"reason_admin": {"en": "left the company"}}}))
        .await
        .unwrap();
    let deliveries = sent["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 2, "one stream per replica: {sent}");
    for delivery in deliveries {
        assert_eq!(delivery["status"], 202, "{delivery}");
    }
    let refused_after = loop {
        if status(a, &alice).await == 401 && status(b, &alice).await == 401 {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "alice still let in"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        refused_after < Duration::from_secs(1),
        "refused on both replicas after {refused_after:?}"
    );
    println!("account-disabled: refused on both replicas after {refused_after:?}");
    assert_eq!(status(a, &bob).await, 200, "nobody else is touched");
    let acted: Vec<Value> = all_events(&[a, b])
        .into_iter()
        .filter(|e| e["action"] == "ssf:account-disabled")
        .collect();
    assert_eq!(acted.len(), 2, "each replica records the event it received");
    for event in &acted {
        assert_eq!(event["category"], "lifecycle", "{event}");
        assert_eq!(event["lifecycle"]["subject"], "alice", "{event}");
        assert_eq!(event["lifecycle"]["source"], "ssf");
        assert_eq!(event["lifecycle"]["reason"], "left the company");
        assert!(
            event["lifecycle"]["acted"]
                .as_array()
                .unwrap()
                .contains(&json!("revoked")),
            "{event}"
        );
        assert_eq!(event["decision"]["effect"], "allow");
        assert_eq!(event["severity"], "high");
    }

    // account-enabled lifts exactly what account-disabled did.
    world
        .idp
        .ssf_emit(json!({"event": "account-enabled", "user": "alice"}))
        .await
        .unwrap();
    assert_eq!(status(a, &alice).await, 200);
    assert_eq!(status(b, &alice).await, 200);

    // A revocation an admin made stays when the IdP enables the account.
    let revoked = send(
        Request::post(format!("{}/revocations", a.admin_url))
            .header("authorization", "Bearer s3cret-admin-token-for-tests")
            .body(Full::new(Bytes::from(
                json!({"subject": "bob"}).to_string(),
            )))
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(revoked.status, 201);
    world
        .idp
        .ssf_emit(json!({"event": "account-enabled", "user": "bob"}))
        .await
        .unwrap();
    assert_eq!(status(b, &bob).await, 401, "the admin's revocation stays");
    let enabled = a
        .audit_events()
        .into_iter()
        .rfind(|e| e["action"] == "ssf:account-enabled")
        .unwrap();
    assert!(
        enabled["lifecycle"]["acted"][0]
            .as_str()
            .unwrap()
            .starts_with("nothing: not disabled by the IdP"),
        "{enabled}"
    );
    assert_valid(&all_events(&[a, b]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_events_require_a_fresh_login_or_a_step_up_and_bad_ones_are_refused() {
    let dir = TempDir::new("ssf-push").unwrap();
    let idp = Idp::start().await.unwrap();
    let upstream = Upstream::start().unwrap();
    let text = format!(
        "{}{}",
        sections(&idp.issuer, &upstream.url(), ""),
        ssf_section(&idp, dir.path(), "push")
    );
    let gateway = GatewayProcess::start(Path::new(BINARY), &text, false)
        .await
        .unwrap();
    wait_verified(&gateway).await;
    let token = |user: &'static str| {
        let idp = &idp;
        async move { idp.user_token(user, TokenRequest::default()).await.unwrap() }
    };

    // credential-change: tokens issued before it are refused; a new login is let in.
    let carol = token("carol").await;
    assert_eq!(status(&gateway, &carol).await, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    idp.ssf_emit(json!({"event": "credential-change", "user": "carol",
        "payload": {"credential_type": "password", "change_type": "update"}}))
        .await
        .unwrap();
    let refused = get(&format!("{}/invoices", gateway.url), Some(&carol))
        .await
        .unwrap();
    assert_problem(&refused, 401);
    assert!(refused.header("www-authenticate").contains("invalid_token"));
    let event = gateway.audit_event(refused.header("x-request-id"));
    assert_eq!(event["decision"]["detail"], "ended_by_security_event");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(status(&gateway, &token("carol").await).await, 200);

    // session-revoked (no session named): the same for bearer tokens.
    let grace = token("grace").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    idp.ssf_emit(
        json!({"event": "session-revoked", "subject": {"format": "complex",
        "user": {"format": "iss_sub", "iss": idp.issuer, "sub": "grace"}}}),
    )
    .await
    .unwrap();
    assert_eq!(status(&gateway, &grace).await, 401);

    // assurance-level-change (decrease): an earlier multi-factor login no longer counts, so the
    // policies ask for a step-up; a new multi-factor login is let in.
    let bob = token("bob").await;
    assert_eq!(status(&gateway, &bob).await, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    idp.ssf_emit(
        json!({"event": "assurance-level-change", "user": "bob", "payload": {
        "namespace": "RFC8176", "current_level": "pwd", "previous_level": "otp",
        "change_direction": "decrease"}}),
    )
    .await
    .unwrap();
    let step_up = get(&format!("{}/invoices", gateway.url), Some(&bob))
        .await
        .unwrap();
    assert_problem(&step_up, 401);
    assert!(
        step_up
            .header("www-authenticate")
            .contains("insufficient_user_authentication"),
        "{:?}",
        step_up.header("www-authenticate")
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(status(&gateway, &token("bob").await).await, 200);

    // Subjects by email (learned from the person's tokens) and opaque id.
    let frank = token("frank").await;
    assert_eq!(status(&gateway, &frank).await, 200);
    idp.ssf_emit(json!({"event": "account-disabled",
        "subject": {"format": "email", "email": "Frank@Example.TEST"}}))
        .await
        .unwrap();
    assert_eq!(status(&gateway, &frank).await, 401, "named by email");
    let ivy = token("ivy").await;
    idp.ssf_emit(json!({"event": "account-purged", "subject": {"format": "opaque", "id": "ivy"}}))
        .await
        .unwrap();
    assert_eq!(status(&gateway, &ivy).await, 401, "named by an opaque id");

    // Bad security events: each refused with RFC 8935's error, acting on nobody, audited.
    let henry = token("henry").await;
    let bad = [
        (
            json!({"event": "account-disabled", "user": "henry", "aud": "urn:someone-else"}),
            400,
            "invalid_audience",
        ),
        (
            json!({"event": "account-disabled", "user": "henry", "sign_with": "foreign"}),
            400,
            "invalid_key",
        ),
        (
            json!({"event": "account-disabled", "user": "henry", "typ": "JWT"}),
            400,
            "invalid_request",
        ),
    ];
    for (event, code, err) in bad {
        let sent = idp.ssf_emit(event.clone()).await.unwrap();
        let delivery = &sent["deliveries"][0];
        assert_eq!(delivery["status"], code, "{event}: {delivery}");
        let body: Value = serde_json::from_str(delivery["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["err"], err, "{event}: {body}");
    }
    assert_eq!(
        status(&gateway, &henry).await,
        200,
        "no bad event acted on henry"
    );
    // A replay: the same token again.
    let good = idp
        .ssf_emit(json!({"event": "credential-change", "user": "dave"}))
        .await
        .unwrap();
    assert_eq!(good["deliveries"][0]["status"], 202);
    let again = idp.ssf_emit(json!({"resend": good["jti"]})).await.unwrap();
    assert_eq!(again["deliveries"][0]["status"], 400, "{again}");
    assert!(
        again["deliveries"][0]["body"]
            .as_str()
            .unwrap()
            .contains("replay")
    );
    // A push without the stream's Authorization.
    let unauthorized = send(
        Request::post(format!("{}/.invoiceguard/ssf/events", gateway.url))
            .header("content-type", "application/secevent+jwt")
            .body(Full::new(Bytes::from(
                good["token"].as_str().unwrap().to_owned(),
            )))
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(unauthorized.status, 401);
    assert_eq!(unauthorized.json()["err"], "authentication_failed");
    let refusals: Vec<Value> = gateway
        .audit_events()
        .into_iter()
        .filter(|e| e["action"] == "ssf:push" && e["decision"]["effect"] == "deny")
        .collect();
    assert_eq!(refusals.len(), 5, "every refused push is audited");
    for (refusal, code) in refusals.iter().zip([
        "invalid_audience",
        "invalid_key",
        "invalid_request",
        "invalid_request",
        "authentication_failed",
    ]) {
        assert!(
            refusal["decision"]["detail"]
                .as_str()
                .unwrap()
                .starts_with(code),
            "{refusal}"
        );
        assert_eq!(refusal["severity"], "high");
    }

    // The SIEM rule fires on every event acted on (6) and every refusal (5), on nothing else.
    let events = gateway.audit_events();
    let acted = ids(&events, |e| {
        e["lifecycle"]["source"] == "ssf"
            && e["decision"]["effect"] == "allow"
            && e["action"] != "ssf:verification"
    });
    assert_eq!(acted.len(), 6, "{acted:?}");
    let refused = ids(&events, |e| {
        e["action"] == "ssf:push" && e["decision"]["effect"] == "deny"
    });
    let matched = fired(&gateway, "idp-security-event.yml");
    assert_eq!(matched, acted.union(&refused).cloned().collect());
    assert!(
        ids(&events, |e| e["action"] == "invoice:list").is_disjoint(&matched),
        "fired on ordinary work"
    );
    assert_valid(&events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_delivery_works_with_the_push_endpoint_off() {
    let dir = TempDir::new("ssf-poll").unwrap();
    let idp = Idp::start().await.unwrap();
    let upstream = Upstream::start().unwrap();
    let text = format!(
        "{}{}\n[limits]\nfailed_auth_per_ip = 30\n",
        sections(&idp.issuer, &upstream.url(), ""),
        ssf_section(&idp, dir.path(), "poll")
    );
    let gateway = GatewayProcess::start(Path::new(BINARY), &text, false)
        .await
        .unwrap();
    wait_verified(&gateway).await;
    let alice = idp
        .user_token("alice", TokenRequest::default())
        .await
        .unwrap();
    assert_eq!(status(&gateway, &alice).await, 200);

    let sent = idp
        .ssf_emit(json!({"event": "account-disabled", "user": "alice"}))
        .await
        .unwrap();
    assert_eq!(sent["deliveries"][0]["status"], "queued");
    let started = Instant::now();
    while status(&gateway, &alice).await != 401 {
        assert!(started.elapsed() < Duration::from_secs(5), "not polled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "polled account-disabled acted on after {:?}",
        started.elapsed()
    );
    let polled = gateway
        .audit_events()
        .into_iter()
        .find(|e| e["action"] == "ssf:account-disabled")
        .unwrap();
    assert_eq!(polled["lifecycle"]["jti"], sent["jti"]);

    // The push endpoint is off: a push is refused.
    let pushed = send(
        Request::post(format!("{}/.invoiceguard/ssf/events", gateway.url))
            .header("content-type", "application/secevent+jwt")
            .header("authorization", "Bearer push-secret-7d41")
            .body(Full::new(Bytes::from(
                sent["token"].as_str().unwrap().to_owned(),
            )))
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(pushed.status, 400);

    // A bad polled event is reported back to the transmitter (setErrs) and audited.
    let forged = idp
        .ssf_emit(json!({"event": "account-disabled", "user": "bob", "sign_with": "foreign"}))
        .await
        .unwrap();
    let started = Instant::now();
    let reported = loop {
        let errors = idp.ssf_errors().await.unwrap();
        if let Some(error) = errors
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["jti"] == forged["jti"])
        {
            break error.clone();
        }
        assert!(started.elapsed() < Duration::from_secs(5), "no setErrs");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(reported["err"], "invalid_key");
    let bob = idp
        .user_token("bob", TokenRequest::default())
        .await
        .unwrap();
    assert_eq!(status(&gateway, &bob).await, 200);
    assert!(
        gateway
            .audit_events()
            .iter()
            .any(|e| e["action"] == "ssf:refused" && e["category"] == "lifecycle"),
        "the refusal is audited"
    );
    assert_valid(&gateway.audit_events());

    // A flood of refused pushes from one address is refused before any check (429), as failed
    // logins are: at most `failed_auth_per_ip` (30) get as far as a refusal.
    let mut refused = 0;
    let throttled = loop {
        let reply = send(
            Request::post(format!("{}/.invoiceguard/ssf/events", gateway.url))
                .header("content-type", "application/secevent+jwt")
                .body(Full::new(Bytes::from("not.a.token")))
                .unwrap(),
        )
        .await
        .unwrap();
        if reply.status == 429 {
            break reply;
        }
        assert_eq!(reply.status, 400);
        refused += 1;
        assert!(refused <= 30, "never throttled");
    };
    assert!(refused >= 29, "throttled after {refused}");
    assert_problem(&throttled, 429);
}

/// Creates and submits an invoice as grace: its id.
async fn submitted_invoice(gateway: &GatewayProcess, grace: &str) -> String {
    let created = send(request(
        "POST",
        &format!("{}/invoices", gateway.url),
        Some(grace),
        Some(json!({"partner_id": "P-1", "amount": 75.0})),
    ))
    .await
    .unwrap();
    assert_eq!(created.status, 201, "{:?}", created.body);
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let submitted = send(request(
        "POST",
        &format!("{}/invoices/{id}/submit", gateway.url),
        Some(grace),
        None,
    ))
    .await
    .unwrap();
    assert_eq!(submitted.status, 200);
    id
}

/// Approves an invoice: the reply.
async fn approve(gateway: &GatewayProcess, token: &str, id: &str) -> Reply {
    send(request(
        "POST",
        &format!("{}/invoices/{id}/approve", gateway.url),
        Some(token),
        None,
    ))
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_counts_until_its_end_on_every_replica_and_the_policies_decide_who_grants() {
    let world = Replicas::start(None).await;
    let (a, b) = (&world.a, &world.b);
    let (dave, alice, grace, henry) = (
        world.token("dave").await,
        world.token("alice").await,
        world.token("grace").await,
        world.token("henry").await,
    );
    // The gateway sees henry's roles (admin and approver) before anyone grants him one.
    status(a, &henry).await;
    let invoice = submitted_invoice(a, &grace).await;
    assert_problem(&approve(b, &alice, &invoice).await, 403);

    // dave (admin) grants alice the approver role for a few seconds under a ticket.
    let (ok, out) = world.grant(
        Some(&dave),
        &[
            "--subject",
            "alice",
            "--role",
            "approver",
            "--until",
            "+5s",
            "--ticket",
            "FIN-123",
            "--reason",
            "cover for bob",
        ],
    );
    assert!(ok, "{out}");
    let granted: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(granted["granted_by"], "dave");
    let until = granted["until_unix"].as_u64().unwrap();
    // Replica B hears of the grant from the store's announcement (within milliseconds).
    let started = Instant::now();
    let approved = loop {
        let reply = approve(b, &alice, &invoice).await;
        if reply.status == 200 || started.elapsed() > Duration::from_secs(2) {
            break reply;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(approved.status, 200, "{:?}", approved.body);
    let used = b.audit_event(approved.header("x-request-id"));
    assert_eq!(used["actor"]["grants"][0]["ticket"], "FIN-123", "{used}");
    assert_eq!(used["actor"]["roles"], json!(["approver", "invoicing"]));
    let (ok, listed) = world.grant(None, &["--list"]);
    assert!(ok && listed.contains("FIN-123"), "{listed}");

    // Refused by the policies: to oneself, a pair segregation of duties keeps apart, without the
    // granter's own token, or without the admin token.
    let (ok, out) = world.grant(
        Some(&dave),
        &[
            "--subject",
            "dave",
            "--role",
            "auditor",
            "--until",
            "+1h",
            "--ticket",
            "FIN-124",
            "--reason",
            "self",
        ],
    );
    assert!(!ok && out.contains("403"), "{out}");
    let (ok, out) = world.grant(
        Some(&dave),
        &[
            "--subject",
            "henry",
            "--role",
            "accountant",
            "--until",
            "+1h",
            "--ticket",
            "FIN-125",
            "--reason",
            "sod",
        ],
    );
    assert!(!ok && out.contains("403"), "{out}");
    let (ok, out) = world.grant(
        None,
        &[
            "--subject",
            "erin",
            "--role",
            "approver",
            "--until",
            "+1h",
            "--ticket",
            "FIN-126",
            "--reason",
            "x",
        ],
    );
    assert!(!ok && out.contains("granter's access token"), "{out}");
    let (ok, out) = world.grant(
        Some(&alice),
        &[
            "--subject",
            "erin",
            "--role",
            "approver",
            "--until",
            "+1h",
            "--ticket",
            "FIN-127",
            "--reason",
            "x",
        ],
    );
    assert!(
        !ok && out.contains("403"),
        "an invoicing clerk grants nothing: {out}"
    );
    let anonymous = get(&format!("{}/grants", a.admin_url), None).await.unwrap();
    assert_eq!(anonymous.status, 401);
    // The admin token alone grants nothing: the granter is a person.
    let tokenless = send(
        Request::post(format!("{}/grants", a.admin_url))
            .header("authorization", "Bearer s3cret-admin-token-for-tests")
            .body(Full::new(Bytes::from(
                json!({"subject": "erin", "role": "approver", "until_unix": 4_000_000_000_u64,
                    "ticket": "FIN-129", "reason": "x"})
                .to_string(),
            )))
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(tokenless.status, 401, "{:?}", tokenless.body);
    let creates: Vec<Value> = a
        .audit_events()
        .into_iter()
        .filter(|e| e["action"] == "grant:create")
        .collect();
    let by_ticket = |ticket: &str| {
        creates
            .iter()
            .find(|e| e["lifecycle"]["ticket"] == ticket)
            .unwrap_or_else(|| panic!("no grant:create event with ticket {ticket}"))
    };
    assert_eq!(by_ticket("FIN-123")["decision"]["effect"], "allow");
    assert_eq!(by_ticket("FIN-123")["actor"]["id"], "dave");
    assert_eq!(
        by_ticket("FIN-124")["decision"]["policies"],
        json!(["grants.never-to-yourself"])
    );
    assert_eq!(
        by_ticket("FIN-125")["decision"]["policies"],
        json!(["grants.never-an-sod-pair"])
    );
    assert_eq!(
        by_ticket("FIN-125")["lifecycle"]["roles_after"],
        json!(["accountant", "admin", "approver"])
    );
    assert_eq!(
        by_ticket("FIN-127")["decision"]["policies"],
        json!(["rbac.invoicing-no-administration"])
    );

    // The grant ends by itself: after its end alice approves on neither replica, and one of
    // them records the expiry, once.
    let second = submitted_invoice(a, &grace).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    tokio::time::sleep(Duration::from_secs(until.saturating_sub(now) + 1)).await;
    assert_problem(&approve(a, &alice, &second).await, 403);
    assert_problem(&approve(b, &alice, &second).await, 403);
    // Each replica sweeps ended grants every second; the first to remove it records it. Read
    // until it is there, then a little longer: a second record would be a bug.
    let expired = || -> Vec<Value> {
        all_events(&[a, b])
            .into_iter()
            .filter(|e| e["action"] == "grant:expired")
            .collect()
    };
    for _ in 0..100 {
        if !expired().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let expired = expired();
    assert_eq!(expired.len(), 1, "{expired:?}");
    assert_eq!(expired[0]["lifecycle"]["ticket"], "FIN-123");
    assert_eq!(expired[0]["lifecycle"]["acted"], json!(["expired"]));

    // Lifted before its end.
    let (ok, out) = world.grant(
        Some(&dave),
        &[
            "--subject",
            "grace",
            "--role",
            "auditor",
            "--until",
            "+1h",
            "--ticket",
            "FIN-128",
            "--reason",
            "audit week",
        ],
    );
    assert!(ok, "{out}");
    let id = serde_json::from_str::<Value>(out.trim()).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (ok, out) = world.grant(Some(&dave), &["--lift", &id]);
    assert!(ok, "{out}");
    let (_, listed) = world.grant(None, &["--list"]);
    assert!(!listed.contains("FIN-128"), "{listed}");

    // The SIEM rule fires on every grant call that reached the gateway (given twice, refused
    // four times, lifted once: the command without a granter's token never sent its call), not
    // on a listing nor ordinary work.
    let events = a.audit_events();
    let calls = ids(&events, |e| {
        e["action"] == "grant:create" || e["action"] == "grant:lift"
    });
    assert_eq!(calls.len(), 7, "{calls:?}");
    assert_eq!(fired(a, "role-grant.yml"), calls);
    assert_valid(&all_events(&[a, b]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_change_at_the_idp_is_recorded_once_across_replicas() {
    let world = Replicas::start(None).await;
    let (a, b) = (&world.a, &world.b);
    let before = world.token("erin").await;
    assert_eq!(status(a, &before).await, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    world
        .idp
        .set_roles("erin", &["auditor", "invoicing"])
        .await
        .unwrap();
    let after = world.token("erin").await;
    for gateway in [a, b, a, b] {
        status(gateway, &after).await;
    }
    // The older token, still valid, shows the old roles: not news.
    status(b, &before).await;
    let changed: Vec<Value> = all_events(&[a, b])
        .into_iter()
        .filter(|e| e["action"] == "identity:roles_changed")
        .collect();
    assert_eq!(changed.len(), 1, "{changed:?}");
    let event = &changed[0];
    assert_eq!(event["severity"], "high");
    assert_eq!(event["category"], "lifecycle");
    assert_eq!(event["lifecycle"]["roles_before"], json!(["auditor"]));
    assert_eq!(
        event["lifecycle"]["roles_after"],
        json!(["auditor", "invoicing"])
    );
    assert_eq!(event["actor"]["id"], "erin");
    let gateway = if a
        .audit_events()
        .iter()
        .any(|e| e["action"] == "identity:roles_changed")
    {
        a
    } else {
        b
    };
    let matched = fired(gateway, "role-grant.yml");
    assert_eq!(
        matched,
        std::collections::BTreeSet::from([event["request_id"].as_str().unwrap().to_owned()])
    );
    assert_valid(&all_events(&[a, b]));
}
