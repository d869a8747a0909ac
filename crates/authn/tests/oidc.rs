//! The gateway as an OpenID Connect relying party: ID tokens checked as OpenID Connect Core
//! section 3.1.3.7 says, each rule against a token the real test IdP signed with its own keys
//! (the code exchange and the login itself are shown in a browser by the session tests).
#![expect(clippy::unwrap_used, reason = "tests fail at the first broken step")]

use invoiceguard_authn::{Authenticator, AuthnConfig, AuthnError, IdTokenExpectations};
use invoiceguard_testkit::Idp;
use serde_json::{Value, json};

const CLIENT: &str = "invoiceguard-web";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_tokens_are_checked_as_openid_connect_core_says() {
    let idp = Idp::start().await.unwrap();
    let config: AuthnConfig = serde_json::from_value(json!({
        "issuer": idp.issuer,
        "audience": ["urn:invoiceguard:invoicing-api"],
        "leeway_s": 0,
    }))
    .unwrap();
    let authn = Authenticator::start(config).await.unwrap();
    let now = now();
    let good = json!({
        "iss": idp.issuer, "sub": "alice", "aud": CLIENT, "exp": now + 300, "iat": now,
        "nonce": "n-1", "auth_time": now - 10, "amr": ["pwd", "otp"], "sid": "s-1",
    });
    let with = |changes: Value| {
        let mut claims = good.clone();
        for (key, value) in changes.as_object().unwrap() {
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(key);
            } else {
                claims[key] = value.clone();
            }
        }
        claims
    };
    let expect = |max_age_s| IdTokenExpectations {
        client_id: CLIENT,
        nonce: "n-1",
        max_age_s,
    };
    let check = |claims: Value, max_age_s: Option<u64>| {
        let (idp, authn) = (&idp, &authn);
        async move {
            let token = idp.sign(json!({"typ": "JWT"}), claims, None).await.unwrap();
            authn
                .verify_id_token(&idp.issuer, &token, &expect(max_age_s))
                .await
        }
    };

    let claims = check(good.clone(), Some(60)).await.unwrap();
    assert_eq!(claims["sub"], "alice");
    assert!(check(with(json!({"azp": CLIENT})), None).await.is_ok());

    for (why, claims, max_age) in [
        ("another nonce", with(json!({"nonce": "n-2"})), None),
        ("no nonce", with(json!({"nonce": null})), None),
        ("issued long ago", with(json!({"iat": now - 3600})), None),
        (
            "issued in the future",
            with(json!({"iat": now + 3600})),
            None,
        ),
        (
            "a login older than max_age",
            with(json!({"auth_time": now - 3600})),
            Some(60),
        ),
        (
            "no auth_time with max_age",
            with(json!({"auth_time": null})),
            Some(60),
        ),
    ] {
        assert!(
            matches!(
                check(claims, max_age).await,
                Err(AuthnError::LoginFailed(_))
            ),
            "{why}"
        );
    }
    for (why, claims) in [
        ("another audience", with(json!({"aud": "someone-else"}))),
        (
            "an audience besides the client",
            with(json!({"aud": [CLIENT, "someone-else"]})),
        ),
        (
            "an access token's audience",
            with(json!({"aud": "urn:invoiceguard:invoicing-api"})),
        ),
    ] {
        assert!(
            matches!(check(claims, None).await, Err(AuthnError::WrongAudience)),
            "{why}"
        );
    }
    assert!(matches!(
        check(with(json!({"azp": "someone-else"})), None).await,
        Err(AuthnError::BadClaim(claim)) if claim == "azp"
    ));
    assert!(matches!(
        check(with(json!({"exp": now - 1})), None).await,
        Err(AuthnError::Expired)
    ));
    assert!(matches!(
        check(with(json!({"iss": "https://another.example"})), None).await,
        Err(AuthnError::WrongIssuer)
    ));
    assert!(check(with(json!({"sub": null})), None).await.is_err());
    // Signed with HMAC keyed by the IdP's public key (algorithm confusion): refused.
    let keys: Value =
        serde_json::from_str(&std::fs::read_to_string(idp.keys_file()).unwrap()).unwrap();
    let kid = keys["keys"][0]["kid"].as_str().unwrap().to_owned();
    let confused = idp
        .sign_hmac_with_public_key(&kid, good.clone())
        .await
        .unwrap();
    assert!(
        authn
            .verify_id_token(&idp.issuer, &confused, &expect(None))
            .await
            .is_err()
    );
    // Tampered after signing: refused.
    let token = idp
        .sign(json!({"typ": "JWT"}), good.clone(), None)
        .await
        .unwrap();
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let payload = invoiceguard_testkit::b64url_encode(
        serde_json::to_vec(&with(json!({"sub": "mallory"})))
            .unwrap()
            .as_slice(),
    );
    parts[1] = payload;
    assert!(matches!(
        authn
            .verify_id_token(&idp.issuer, &parts.join("."), &expect(None))
            .await,
        Err(AuthnError::BadSignature)
    ));
}
