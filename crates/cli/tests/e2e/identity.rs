//! Identity end to end: the bad-token corpus, every signing algorithm, key rotation at the IdP,
//! a burst of unknown key ids, step-up, introspection, API keys, client certificates, the roles
//! file and several trusted issuers.

use super::*;
use invoiceguard_testkit::{b64url_decode, b64url_encode};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The claims of a valid token for alice from `issuer`, with `extra` merged over them.
fn claims(issuer: &str, extra: Value) -> Value {
    let mut claims = json!({
        "iss": issuer, "sub": "alice", "aud": "urn:invoiceguard:invoicing-api",
        "iat": now(), "exp": now() + 300, "roles": ["invoicing"], "amr": ["pwd", "otp"],
        "client_id": "invoiceguard-demo",
    });
    for (key, value) in extra.as_object().unwrap() {
        claims[key] = value.clone();
    }
    claims
}

/// A gateway with extra `[authn]` lines (and `[listen]` lines) in front of a fresh example API.
async fn gateway_with(
    idp: &Idp,
    authn_extra: &str,
    listen_extra: &str,
    https: bool,
) -> (Upstream, GatewayProcess) {
    let upstream = Upstream::start().unwrap();
    let text = format!(
        "{}{authn_extra}\n",
        sections(&idp.issuer, &upstream.url(), listen_extra)
    );
    let gateway = GatewayProcess::start(Path::new(BINARY), &text, https)
        .await
        .unwrap();
    (upstream, gateway)
}

/// A 401 for a bad credential, as the client sees it, and the reason only the audit event has.
fn assert_refused(gateway: &GatewayProcess, reply: &Reply, reason: &str, case: &str) {
    assert_eq!(reply.status, 401, "{case}: {:?}", reply.body);
    assert_eq!(
        reply.header("www-authenticate"),
        "Bearer realm=\"invoiceguard\", error=\"invalid_token\", error_description=\"the access token is not valid\"",
        "{case}"
    );
    assert_eq!(
        assert_problem(reply, 401)["detail"],
        "the access token is not valid",
        "{case}"
    );
    let event = gateway.audit_event(reply.header("x-request-id"));
    assert_eq!(event["decision"]["detail"], reason, "{case}");
    assert_eq!(event["decision"]["reason"], "unauthenticated", "{case}");
    assert_eq!(event["actor"], Value::Null, "{case}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bad_token_corpus_is_refused_with_401_and_its_reason() {
    let world = World::start().await;
    let idp = &world.idp;
    let keys = idp.keys().unwrap();
    let kid = |alg: &str| keys.iter().find(|(_, a)| a == alg).unwrap().0.clone();
    let good = world.token("alice").await;
    assert_eq!(
        get(&world.url("/invoices"), Some(&good))
            .await
            .unwrap()
            .status,
        200
    );
    let parts: Vec<&str> = good.split('.').collect();
    let typ = json!({"typ": "at+jwt"});

    // The payload re-encoded with the admin role: the signature no longer covers it.
    let mut payload: Value = serde_json::from_slice(&b64url_decode(parts[1])).unwrap();
    payload["roles"] = json!(["admin"]);
    let tampered_payload = format!(
        "{}.{}.{}",
        parts[0],
        b64url_encode(payload.to_string().as_bytes()),
        parts[2]
    );
    // A character in the middle of the signature changed (the last one may only touch padding).
    let mut signature = parts[2].to_owned();
    let middle = signature.len() / 2;
    let flipped = if &signature[middle..=middle] == "A" {
        "B"
    } else {
        "A"
    };
    signature.replace_range(middle..=middle, flipped);
    let tampered_signature = format!("{}.{}.{signature}", parts[0], parts[1]);
    let unsigned = format!(
        "{}.{}.",
        b64url_encode(br#"{"alg":"none","typ":"at+jwt"}"#),
        parts[1]
    );
    let sign = |header: Value, extra: Value, key: Option<String>| {
        let claims = claims(&idp.issuer, extra);
        async move { idp.sign(header, claims, key.as_deref()).await.unwrap() }
    };

    let cases: Vec<(&str, String, &str)> = vec![
        ("alg none", unsigned, "malformed_token"),
        (
            "HS256 keyed with the IdP's public key",
            idp.sign_hmac_with_public_key(&kid("RS256"), claims(&idp.issuer, json!({})))
                .await
                .unwrap(),
            "algorithm_mismatch",
        ),
        (
            "RS256 signature under an ES256 key id",
            sign(
                json!({"typ": "at+jwt", "kid": kid("ES256")}),
                json!({}),
                Some(kid("RS256")),
            )
            .await,
            "algorithm_mismatch",
        ),
        ("tampered payload", tampered_payload, "bad_signature"),
        ("tampered signature", tampered_signature, "bad_signature"),
        (
            "expired",
            sign(typ.clone(), json!({"exp": now() - 10}), None).await,
            "expired",
        ),
        (
            "not yet valid",
            sign(typ.clone(), json!({"nbf": now() + 300}), None).await,
            "not_yet_valid",
        ),
        (
            "issued in the future",
            sign(typ.clone(), json!({"iat": now() + 300}), None).await,
            "not_yet_valid",
        ),
        (
            "wrong issuer",
            sign(typ.clone(), json!({"iss": "https://evil.example"}), None).await,
            "wrong_issuer",
        ),
        (
            "wrong audience",
            sign(typ.clone(), json!({"aud": "urn:other:api"}), None).await,
            "wrong_audience",
        ),
        (
            "no subject",
            sign(typ.clone(), json!({"sub": null}), None).await,
            "bad_claim",
        ),
        (
            "unknown key id",
            sign(
                json!({"typ": "at+jwt", "kid": "no-such-key"}),
                json!({}),
                None,
            )
            .await,
            "unknown_key",
        ),
        (
            "not an access token",
            sign(json!({"typ": "JWT"}), json!({}), None).await,
            "wrong_token_type",
        ),
        (
            // RFC 7797's `b64` (the one extension the signer knows): the gateway understands
            // none, so any `crit` refuses the token (RFC 7515 4.1.11).
            "a critical extension the gateway does not understand",
            sign(
                json!({"typ": "at+jwt", "crit": ["b64"], "b64": true}),
                json!({}),
                None,
            )
            .await,
            "unsupported_crit",
        ),
        (
            "garbage base64",
            "e30.%%%%.@@@@".to_owned(),
            "malformed_token",
        ),
        (
            "larger than max_token_bytes",
            format!("{}.{}.{}", parts[0], "A".repeat(20_000), parts[2]),
            "token_too_large",
        ),
    ];
    for (case, token, reason) in &cases {
        let reply = get(&world.url("/invoices"), Some(token)).await.unwrap();
        assert_refused(&world.gateway, &reply, reason, case);
    }

    // A 10 MB token never reaches the pipeline: the connection's header limit refuses it (431,
    // and the connection is closed, often before the client has finished writing), and the
    // gateway goes on serving.
    let huge = format!("Bearer {}", "A".repeat(10 * 1024 * 1024));
    let request = Request::get(world.url("/invoices"))
        .header("authorization", huge)
        .body(Full::default())
        .unwrap();
    match send(request).await {
        Ok(reply) => assert_eq!(reply.status, 431),
        Err(error) => {
            let chain = format!("{error:#}");
            assert!(
                chain.contains("Broken pipe")
                    || chain.contains("reset")
                    || chain.contains("closed"),
                "{chain}"
            );
        }
    }
    assert_eq!(
        get(&world.url("/invoices"), Some(&good))
            .await
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        world.upstream.journal().await.unwrap().len(),
        2,
        "no refused request was forwarded"
    );
}

/// A token may not say where its key is: `jku`, `x5u`, an embedded `jwk` or `x5c`, or a `kid`
/// that is a URL are never followed nor used. The attacker's own IdP signs the tokens, names its
/// key set every way a header can, and counts the fetches of it: none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_never_chooses_its_own_key() {
    let world = World::start().await;
    let dir = TempDir::new("attacker").unwrap();
    let attacker = Idp::start_with_keys(&dir.path().join("keys.json"), free_port().unwrap())
        .await
        .unwrap();
    let attacker_keys = attacker.keys().unwrap();
    let (attacker_kid, attacker_alg) = attacker_keys[0].clone();
    let jwks: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("keys.json")).unwrap())
            .unwrap();
    let public: Value = {
        let mut key = jwks["keys"][0].clone();
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            key.as_object_mut().unwrap().remove(private);
        }
        key
    };
    let jwks_url = format!("{}/jwks", attacker.issuer);
    let fetches_before = attacker.jwks_fetches().await.unwrap();
    let headers = [
        ("jku", json!({"typ": "at+jwt", "jku": jwks_url})),
        ("x5u", json!({"typ": "at+jwt", "x5u": jwks_url})),
        ("jwk", json!({"typ": "at+jwt", "jwk": public})),
        ("x5c", json!({"typ": "at+jwt", "x5c": ["MIIBkTCB+wIJAK"]})),
        ("kid as a URL", json!({"typ": "at+jwt", "kid": jwks_url})),
        (
            "every one at once",
            json!({"typ": "at+jwt", "jku": jwks_url, "x5u": jwks_url, "jwk": public}),
        ),
    ];
    for (case, header) in headers {
        let token = attacker
            .sign(
                header,
                claims(&world.idp.issuer, json!({})),
                Some(&attacker_kid),
            )
            .await
            .unwrap();
        let reply = get(&world.url("/invoices"), Some(&token)).await.unwrap();
        assert_refused(
            &world.gateway,
            &reply,
            "unknown_key",
            &format!("{case} ({attacker_alg})"),
        );
    }
    assert_eq!(
        attacker.jwks_fetches().await.unwrap(),
        fetches_before,
        "the gateway fetched the attacker's key set"
    );
    assert!(world.upstream.journal().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_supported_algorithm_verifies() {
    let world = World::start().await;
    for alg in ["ES256", "ES384", "EdDSA", "RS256", "PS256"] {
        let token = world
            .idp
            .user_token(
                "alice",
                TokenRequest {
                    alg: Some(alg),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let header: Value =
            serde_json::from_slice(&b64url_decode(token.split('.').next().unwrap())).unwrap();
        assert_eq!(header["alg"], alg);
        let reply = get(&world.url("/invoices"), Some(&token)).await.unwrap();
        assert_eq!(reply.status, 200, "{alg}: {:?}", reply.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_at_the_idp_fails_no_request() {
    let world = World::start().await;
    let kid_of = |token: &str| -> String {
        let header: Value =
            serde_json::from_slice(&b64url_decode(token.split('.').next().unwrap())).unwrap();
        header["kid"].as_str().unwrap().to_owned()
    };
    let first = world.token("alice").await;
    let old_kid = kid_of(&first);
    let mut statuses = Vec::new();
    for i in 0..40 {
        if i == 15 {
            let new_kids = world.idp.rotate_keys().await.unwrap();
            let token = world.token("alice").await;
            assert!(
                new_kids.contains(&kid_of(&token)),
                "the IdP signs with a new key after rotation"
            );
            // Twenty requests at once with the first new-key token: one key refresh serves all.
            let burst: Vec<_> = (0..20)
                .map(|_| {
                    let (url, token) = (world.url("/invoices"), token.clone());
                    tokio::spawn(async move { get(&url, Some(&token)).await.unwrap().status })
                })
                .collect();
            for request in burst {
                statuses.push(request.await.unwrap());
            }
        }
        let token = world.token("alice").await;
        statuses.push(
            get(&world.url("/invoices"), Some(&token))
                .await
                .unwrap()
                .status,
        );
    }
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    // Tokens signed before the rotation still verify: the old key is still published.
    assert_eq!(
        get(&world.url("/invoices"), Some(&first))
            .await
            .unwrap()
            .status,
        200
    );
    assert_ne!(kid_of(&world.token("alice").await), old_kid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_the_idp_retires_voids_the_tokens_it_signed_cached_ones_too() {
    let world = World::start().await;
    let old = world.token("alice").await;
    // Verified once: from here on the token is answered from the token cache.
    for _ in 0..2 {
        assert_eq!(
            get(&world.url("/invoices"), Some(&old))
                .await
                .unwrap()
                .status,
            200
        );
    }
    world.idp.retire_keys().await.unwrap();
    // A token under a new key makes the gateway fetch the keys again.
    let new = world.token("alice").await;
    assert_eq!(
        get(&world.url("/invoices"), Some(&new))
            .await
            .unwrap()
            .status,
        200
    );
    let refused = get(&world.url("/invoices"), Some(&old)).await.unwrap();
    assert_refused(
        &world.gateway,
        &refused,
        "unknown_key",
        "a retired key's token",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_unknown_key_ids_costs_one_fetch_per_interval_and_locks_out_nobody() {
    let idp = Idp::start().await.unwrap();
    // The default interval (1 s); more made-up key ids than the address's lockout limit (30).
    let (_upstream, gateway) = gateway_with(&idp, "", "", false).await;
    let before = idp.jwks_fetches().await.unwrap();
    let mut tokens = Vec::new();
    for i in 0..50 {
        let header = json!({"typ": "at+jwt", "kid": format!("bogus-{i}")});
        tokens.push(
            idp.sign(header, claims(&idp.issuer, json!({})), None)
                .await
                .unwrap(),
        );
    }
    let started = std::time::Instant::now();
    let requests: Vec<_> = tokens
        .into_iter()
        .map(|token| {
            let url = format!("{}/invoices", gateway.url);
            tokio::spawn(async move { get(&url, Some(&token)).await.unwrap() })
        })
        .collect();
    for request in requests {
        let reply = request.await.unwrap();
        assert_refused(&gateway, &reply, "unknown_key", "bogus kid");
        assert_eq!(reply.header("retry-after"), "1");
    }
    let fetched = idp.jwks_fetches().await.unwrap() - before;
    let seconds = started.elapsed().as_secs() + 1;
    assert!(
        fetched <= 1 + seconds,
        "{fetched} JWKS fetches in {seconds} s for 50 unknown key ids"
    );
    // None of them was a failed login: the address is not locked out.
    let valid = idp
        .user_token("alice", TokenRequest::default())
        .await
        .unwrap();
    assert_eq!(
        get(&format!("{}/invoices", gateway.url), Some(&valid))
            .await
            .unwrap()
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_right_after_a_made_up_key_id_fails_no_request_and_retired_keys_lock_out_nobody()
{
    let world = World::start().await;
    let alice = world.token("alice").await;
    assert_eq!(
        get(&world.url("/invoices"), Some(&alice))
            .await
            .unwrap()
            .status,
        200
    );
    // A stranger's made-up key id makes the gateway fetch the keys now...
    let junk = world
        .idp
        .sign(
            json!({"typ": "at+jwt", "kid": "made-up"}),
            claims(&world.idp.issuer, json!({"sub": "mallory"})),
            None,
        )
        .await
        .unwrap();
    let refused = get(&world.url("/invoices"), Some(&junk)).await.unwrap();
    assert_refused(&world.gateway, &refused, "unknown_key", "made-up kid");
    // ...and the IdP rotates right after: every new-key token is accepted, none waits long.
    world.idp.retire_keys().await.unwrap();
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let token = world.token("alice").await;
        let burst: Vec<_> = (0..4)
            .map(|_| {
                let (url, token) = (world.url("/invoices"), token.clone());
                tokio::spawn(async move { get(&url, Some(&token)).await.unwrap().status })
            })
            .collect();
        for request in burst {
            statuses.push(request.await.unwrap());
        }
    }
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    // The old key was retired: alice's old token is refused as many times as it is sent, and
    // never counts as a failed login, for her or her address.
    for _ in 0..40 {
        let refused = get(&world.url("/invoices"), Some(&alice)).await.unwrap();
        assert_eq!(refused.status, 401, "{:?}", refused.body);
    }
    assert_eq!(
        get(&world.url("/invoices"), Some(&world.token("alice").await))
            .await
            .unwrap()
            .status,
        200
    );
    // An expired token of hers (signed by the current key) does not count either.
    let expired = world
        .idp
        .sign(
            json!({"typ": "at+jwt"}),
            claims(
                &world.idp.issuer,
                json!({"iat": now() - 900, "exp": now() - 600}),
            ),
            None,
        )
        .await
        .unwrap();
    for _ in 0..40 {
        let refused = get(&world.url("/invoices"), Some(&expired)).await.unwrap();
        assert_refused(&world.gateway, &refused, "expired", "expired");
    }
    assert_eq!(
        get(&world.url("/invoices"), Some(&world.token("alice").await))
            .await
            .unwrap()
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_login_gets_the_step_up_challenge_and_a_fresh_one_passes() {
    let world = World::start().await;
    let alice = world.token("alice").await;
    assert_eq!(
        send(request(
            "POST",
            &world.url("/invoices/INV-1/submit"),
            Some(&alice),
            None
        ))
        .await
        .unwrap()
        .status,
        200
    );
    let stale_bob = world
        .idp
        .user_token(
            "bob",
            TokenRequest {
                auth_age: Some(3600),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let reply = send(request(
        "POST",
        &world.url("/invoices/INV-1/approve"),
        Some(&stale_bob),
        None,
    ))
    .await
    .unwrap();
    let problem = assert_problem(&reply, 401);
    assert_eq!(problem["type"], "urn:invoiceguard:problem:step-up-required");
    assert_eq!(
        reply.header("www-authenticate"),
        "Bearer realm=\"invoiceguard\", error=\"insufficient_user_authentication\", \
         error_description=\"a stronger or more recent login is required\", max_age=\"900\""
    );
    let event = world.gateway.audit_event(reply.header("x-request-id"));
    assert_eq!(event["decision"]["reason"], "step_up");
    assert_eq!(
        event["decision"]["policies"],
        json!(["mfa.fresh-login-for-sensitive-actions"])
    );
    assert_eq!(event["decision"]["detail"], "a login within 900s required");
    // Reading is not sensitive: the same stale token may list invoices.
    assert_eq!(
        get(&world.url("/invoices"), Some(&stale_bob))
            .await
            .unwrap()
            .status,
        200
    );

    let fresh_bob = world.token("bob").await;
    let approved = send(request(
        "POST",
        &world.url("/invoices/INV-1/approve"),
        Some(&fresh_bob),
        None,
    ))
    .await
    .unwrap();
    assert_eq!(approved.status, 200, "{:?}", approved.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opaque_tokens_are_introspected() {
    let idp = Idp::start().await.unwrap();
    let dir = TempDir::new("introspection").unwrap();
    let secret = dir.path().join("client-secret");
    std::fs::write(&secret, "gateway-introspection-secret\n").unwrap();
    let extra = format!(
        "\n[authn.introspection]\nclient_id = \"invoiceguard-gateway\"\nclient_secret_file = {secret:?}\n"
    );
    let (_upstream, gateway) = gateway_with(&idp, &extra, "", false).await;
    let opaque = idp
        .user_token(
            "alice",
            TokenRequest {
                opaque: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(!opaque.contains('.'), "an opaque token: {opaque}");
    let reply = get(&format!("{}/invoices", gateway.url), Some(&opaque))
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let event = gateway.audit_event(reply.header("x-request-id"));
    assert_eq!(event["actor"]["auth_method"], "bearer_introspected");
    assert_eq!(event["actor"]["id"], "alice");
    assert_eq!(event["actor"]["roles"], json!(["invoicing"]));
    assert_eq!(event["actor"]["mfa"], true);

    let bogus = get(
        &format!("{}/invoices", gateway.url),
        Some("no-such-opaque-token"),
    )
    .await
    .unwrap();
    assert_refused(&gateway, &bogus, "inactive_token", "unknown opaque token");

    // Without introspection configured an opaque token is simply not a JWT.
    let world = World::start().await;
    let reply = get(&world.url("/invoices"), Some(&opaque)).await.unwrap();
    assert_refused(
        &world.gateway,
        &reply,
        "malformed_token",
        "opaque without introspection",
    );
}

/// The SHA-256 hash of an API key, as `invoiceguard apikey hash` prints it.
pub(crate) fn api_key_hash(key: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new(BINARY)
        .args(["apikey", "hash"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{key}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_authenticate_integration_accounts_and_rotate() {
    let idp = Idp::start().await.unwrap();
    let (old, new, retired) = (
        "legacy-batch-key-2025-0001",
        "legacy-batch-key-2026-0002",
        "legacy-batch-key-2024-0000",
    );
    let extra = format!(
        "\n[[authn.api_keys]]\naccount = \"legacy-batch\"\nscopes = [\"invoices:read\"]\nsha256 = [\"{}\", \"{}\"]\n",
        api_key_hash(old),
        api_key_hash(new)
    );
    let (upstream, gateway) = gateway_with(&idp, &extra, "", false).await;
    let with_key = |method: &str, path: &str, key: &str| {
        Request::builder()
            .method(method)
            .uri(format!("{}{path}", gateway.url))
            .header("x-api-key", key)
            .body(Full::default())
            .unwrap()
    };
    for key in [old, new] {
        let reply = send(with_key("GET", "/invoices", key)).await.unwrap();
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        let event = gateway.audit_event(reply.header("x-request-id"));
        assert_eq!(event["actor"]["auth_method"], "api_key");
        assert_eq!(event["actor"]["type"], "service_account");
        assert_eq!(event["actor"]["id"], "legacy-batch");
    }
    let reply = send(with_key("GET", "/invoices", retired)).await.unwrap();
    assert_refused(&gateway, &reply, "bad_api_key", "a rotated-out key");
    let reply = send(with_key("POST", "/invoices/INV-1/approve", new))
        .await
        .unwrap();
    assert_problem(&reply, 403);
    let journal = upstream.journal().await.unwrap();
    let forwarded = journal
        .iter()
        .filter(|e| {
            !e["headers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|h| h[0] == "x-invoiceguard-principal-type" && h[1] == "gateway")
        })
        .count();
    assert_eq!(
        forwarded, 2,
        "the two allowed reads; the approval was looked up, then refused"
    );
    let keys_forwarded = journal
        .iter()
        .flat_map(|e| e["headers"].as_array().unwrap())
        .filter(|h| h[0] == "x-api-key")
        .count();
    assert_eq!(keys_forwarded, 0, "the API key never reaches the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_authenticate_integration_accounts() {
    let idp = Idp::start().await.unwrap();
    let dir = TempDir::new("mtls").unwrap();
    let (ca, cert, key) = invoiceguard_testkit::certificates(dir.path()).unwrap();
    let (erp_cert, erp_key) =
        invoiceguard_testkit::client_certificate(dir.path(), "erp.integration.test").unwrap();
    let (other_cert, other_key) =
        invoiceguard_testkit::client_certificate(dir.path(), "stranger.integration.test").unwrap();
    let listen =
        format!("tls = {{ cert_file = {cert:?}, key_file = {key:?} }}\nclient_ca_file = {ca:?}");
    let extra = "\n[[authn.mtls_accounts]]\ndns_name = \"erp.integration.test\"\naccount = \"erp-mtls\"\nscopes = [\"invoices:read\"]\n";
    let (_upstream, gateway) = gateway_with(&idp, extra, &listen, true).await;
    let url = |path: &str| format!("{}{path}", gateway.url);

    let erp = TlsClient::with_client_certificate(&ca, &erp_cert, &erp_key).unwrap();
    let reply = erp
        .send(request("GET", &url("/invoices"), None, None))
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let event = gateway.audit_event(reply.header("x-request-id"));
    assert_eq!(event["actor"]["auth_method"], "client_certificate");
    assert_eq!(event["actor"]["id"], "erp-mtls");
    let reply = erp
        .send(request(
            "POST",
            &url("/invoices"),
            None,
            Some(json!({"partner_id": "P-1", "amount": 1.0})),
        ))
        .await
        .unwrap();
    assert_problem(&reply, 403);

    let stranger = TlsClient::with_client_certificate(&ca, &other_cert, &other_key).unwrap();
    let reply = stranger
        .send(request("GET", &url("/invoices"), None, None))
        .await
        .unwrap();
    assert_refused(
        &gateway,
        &reply,
        "unknown_client_certificate",
        "a certificate of no account",
    );

    // People keep using tokens on the same listener, without a certificate.
    let anonymous = TlsClient::new(&ca).unwrap();
    let alice = idp
        .user_token("alice", TokenRequest::default())
        .await
        .unwrap();
    assert_eq!(
        anonymous
            .send(request("GET", &url("/invoices"), Some(&alice), None))
            .await
            .unwrap()
            .status,
        200
    );
    assert_problem(
        &anonymous
            .send(request("GET", &url("/invoices"), None, None))
            .await
            .unwrap(),
        401,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_roles_file_maps_idp_groups_to_cedar_roles() {
    let idp = Idp::start().await.unwrap();
    let dir = TempDir::new("roles").unwrap();
    let roles = dir.path().join("roles.toml");
    std::fs::write(&roles, "[roles]\n\"/finance/ap-clerks\" = [\"invoicing\"]\n\"/finance/approvers\" = [\"approver\"]\n").unwrap();
    let extra = format!("roles_claims = [\"groups\"]\nroles_file = {roles:?}\n");
    let (_upstream, gateway) = gateway_with(&idp, &extra, "", false).await;
    let alice = idp
        .user_token("alice", TokenRequest::default())
        .await
        .unwrap();
    let reply = send(request(
        "POST",
        &format!("{}/invoices", gateway.url),
        Some(&alice),
        Some(json!({"partner_id": "P-1", "amount": 5.0})),
    ))
    .await
    .unwrap();
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    assert_eq!(
        gateway.audit_event(reply.header("x-request-id"))["actor"]["roles"],
        json!(["invoicing"])
    );
    // Erin's token says `roles: ["auditor"]` but she is in no mapped group: she gets nothing.
    let erin = idp
        .user_token("erin", TokenRequest::default())
        .await
        .unwrap();
    let reply = get(&format!("{}/invoices", gateway.url), Some(&erin))
        .await
        .unwrap();
    assert_problem(&reply, 403);
    assert_eq!(
        gateway.audit_event(reply.header("x-request-id"))["actor"]["roles"],
        json!([])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_issuers_can_be_trusted() {
    let staff = Idp::start().await.unwrap();
    let partners = Idp::start().await.unwrap();
    let stranger = Idp::start().await.unwrap();
    let extra = format!(
        "\n[[authn.also_trust]]\nissuer = \"{}\"\naudience = [\"urn:invoiceguard:invoicing-api\"]\n",
        partners.issuer
    );
    let (_upstream, gateway) = gateway_with(&staff, &extra, "", false).await;
    for idp in [&staff, &partners] {
        let token = idp
            .user_token("alice", TokenRequest::default())
            .await
            .unwrap();
        let reply = get(&format!("{}/invoices", gateway.url), Some(&token))
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{}: {:?}", idp.issuer, reply.body);
    }
    let token = stranger
        .user_token("alice", TokenRequest::default())
        .await
        .unwrap();
    let reply = get(&format!("{}/invoices", gateway.url), Some(&token))
        .await
        .unwrap();
    assert_refused(&gateway, &reply, "wrong_issuer", "an issuer nobody trusts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idp_outage_keeps_the_last_good_keys_serving() {
    let World {
        idp,
        upstream: _upstream,
        gateway,
    } = World::start().await;
    let before = idp
        .user_token("alice", TokenRequest::default())
        .await
        .unwrap();
    let during = idp
        .user_token("bob", TokenRequest::default())
        .await
        .unwrap();
    assert_eq!(
        get(&format!("{}/invoices", gateway.url), Some(&before))
            .await
            .unwrap()
            .status,
        200
    );
    drop(idp);
    // `during` was never seen (not cached): it verifies against the keys fetched before the outage.
    let reply = get(&format!("{}/invoices", gateway.url), Some(&during))
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(
        gateway.audit_event(reply.header("x-request-id"))["actor"]["id"],
        "bob"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integration_tokens_stay_within_their_scope() {
    let world = World::start().await;
    let reader = world
        .idp
        .service_token("erp-sync", "erp-sync-secret", "invoices:read")
        .await
        .unwrap();
    assert_eq!(
        get(&world.url("/invoices"), Some(&reader))
            .await
            .unwrap()
            .status,
        200
    );
    let create = request(
        "POST",
        &world.url("/invoices"),
        Some(&reader),
        Some(json!({"partner_id": "P-1", "amount": 3.0})),
    );
    let reply = send(create).await.unwrap();
    assert_problem(&reply, 403);
    let event = world.gateway.audit_event(reply.header("x-request-id"));
    assert_eq!(event["actor"]["scopes"], json!(["invoices:read"]));
    assert_eq!(
        event["decision"]["policies"],
        json!([]),
        "no permit matched: default deny"
    );
    let partners = get(&world.url("/partners"), Some(&reader)).await.unwrap();
    assert_problem(&partners, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_reloaded_without_a_restart_and_every_reload_is_audited() {
    let idp = Idp::start().await.unwrap();
    let (old, new) = ("legacy-batch-key-2025-0001", "legacy-batch-key-2026-0002");
    let accounts = |hashes: &[&str]| {
        format!(
            "\n[[authn.api_keys]]\naccount = \"legacy-batch\"\nscopes = [\"invoices:read\"]\nsha256 = [{}]\n",
            hashes
                .iter()
                .map(|key| format!("\"{}\"", api_key_hash(key)))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let dir = TempDir::new("reload-credentials").unwrap();
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, "first-admin-token\n").unwrap();
    let admin =
        format!("\n[admin]\naddress = \"127.0.0.1:{{admin_port}}\"\ntoken_file = {token_file:?}\n");
    let (_upstream, gateway) = gateway_with(
        &idp,
        &format!("{}{admin}", accounts(&[old, new])),
        "",
        false,
    )
    .await;
    let pid = gateway.pid();
    let status_with = |key: &'static str| {
        let url = format!("{}/invoices/INV-1", gateway.url);
        async move {
            let request = Request::get(url)
                .header("x-api-key", key)
                .body(Full::default())
                .unwrap();
            send(request).await.unwrap().status
        }
    };
    assert_eq!((status_with(old).await, status_with(new).await), (200, 200));
    // The rotation ends: the old key's hash is removed from the file (written whole, renamed).
    let config = gateway.config_file();
    let replace = |text: String| {
        let temporary = config.with_extension("new");
        std::fs::write(&temporary, text).unwrap();
        std::fs::rename(&temporary, &config).unwrap();
    };
    let original = std::fs::read_to_string(&config).unwrap();
    replace(original.replace(&accounts(&[old, new]), &accounts(&[new])));
    let mut refused = false;
    for _ in 0..50 {
        if status_with(old).await == 401 {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused, "the removed key is refused within seconds");
    assert_eq!(status_with(new).await, 200);
    assert_eq!(gateway.pid(), pid, "no restart");
    let reloaded = |action: &str| {
        gateway
            .audit_events()
            .into_iter()
            .filter(|e| e["action"] == action)
            .collect::<Vec<_>>()
    };
    let done = reloaded("config:credentials_reloaded");
    assert_eq!(done.len(), 1, "{done:?}");
    assert_eq!(done[0]["category"], "administration");
    assert_eq!(done[0]["severity"], "high");
    assert!(
        done[0]["decision"]["detail"]
            .as_str()
            .unwrap()
            .contains("accepted API-key hashes 1 (were 2)"),
        "{}",
        done[0]
    );

    // A broken file is refused as a whole: the credentials in force stay.
    replace(
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("timeout_ms = 5000", "timeout_ms = \"soon\""),
    );
    let mut refusals = Vec::new();
    for _ in 0..50 {
        refusals = reloaded("config:reload_refused");
        if !refusals.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(refusals.len(), 1);
    assert_eq!(refusals[0]["severity"], "error");
    assert!(
        refusals[0]["decision"]["detail"]
            .as_str()
            .unwrap()
            .contains("upstream.timeout_ms"),
        "{}",
        refusals[0]
    );
    assert_eq!((status_with(old).await, status_with(new).await), (401, 200));

    // The admin token is rotated in its file and the file fixed; SIGHUP reloads at once.
    replace(original.replace(&accounts(&[old, new]), &accounts(&[new])));
    std::fs::write(&token_file, "second-admin-token\n").unwrap();
    gateway.hangup().unwrap();
    let list = |token: &'static str| {
        let url = format!("{}/revocations", gateway.admin_url);
        async move {
            send(request("GET", &url, Some(token), None))
                .await
                .unwrap()
                .status
        }
    };
    let mut rotated = false;
    for _ in 0..50 {
        if list("second-admin-token").await == 200 {
            rotated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(rotated, "the new admin token works");
    assert_eq!(
        list("first-admin-token").await,
        401,
        "the old one no longer does"
    );
    assert_eq!(gateway.pid(), pid);
}
