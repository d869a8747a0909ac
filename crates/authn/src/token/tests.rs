//! The token checks against keys made here: every claim check jsonwebtoken's `Validation` made
//! before, the signature, the header, the key's type and curve.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair};
use serde_json::json;

use super::*;
use crate::keys::signing_key;

const ISSUER: &str = "https://idp.example";
const NOW: u64 = 1_800_000_000;

struct Signer {
    pair: EcdsaKeyPair,
    key: SigningKey,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn signer() -> Signer {
    let rng = SystemRandom::new();
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .unwrap();
    let point = pair.public_key().as_ref().to_vec();
    let jwk = json!({"kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256",
        "x": b64(&point[1..33]), "y": b64(&point[33..65])});
    let key = signing_key(&serde_json::from_value(jwk).unwrap())
        .unwrap()
        .unwrap();
    Signer { pair, key }
}

impl Signer {
    fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", b64(signature.as_ref()))
    }

    fn token(&self, claims: &Value) -> String {
        self.sign(
            &json!({"alg": "ES256", "kid": "k1", "typ": "at+jwt"}),
            claims,
        )
    }

    fn check(&self, claims: Value) -> Result<Map<String, Value>, AuthnError> {
        let token = self.token(&claims);
        Jwt::parse(&token)?.verify(&self.key, &bearer(), NOW)
    }
}

fn bearer() -> Checks<'static> {
    static AUDIENCE: std::sync::LazyLock<Vec<String>> =
        std::sync::LazyLock::new(|| vec!["api".to_owned(), "other-api".to_owned()]);
    Checks {
        issuer: ISSUER,
        audience: &AUDIENCE,
        required: &["exp", "iss", "aud", "sub"],
        exp: true,
        nbf: true,
        iat: true,
        leeway_s: 30,
    }
}

fn good() -> Value {
    json!({"iss": ISSUER, "aud": "api", "sub": "alice", "exp": NOW + 300, "iat": NOW})
}

fn with(mut claims: Value, name: &str, value: Value) -> Value {
    claims[name] = value;
    claims
}

fn without(mut claims: Value, name: &str) -> Value {
    claims.as_object_mut().unwrap().remove(name);
    claims
}

#[test]
fn a_good_token_verifies_and_gives_its_claims() {
    let signer = signer();
    let claims = signer.check(good()).unwrap();
    assert_eq!(claims["sub"], "alice");
    // An audience array naming this API, fractional dates, `nbf` passed: all fine.
    let claims = with(good(), "aud", json!(["someone-else", "other-api"]));
    let claims = with(claims, "exp", json!(NOW as f64 + 0.4));
    signer.check(with(claims, "nbf", json!(NOW - 10))).unwrap();
}

#[test]
fn a_changed_token_or_signature_is_refused() {
    let signer = signer();
    let token = signer.token(&good());
    let (input, sig) = token.rsplit_once('.').unwrap();
    let mut raw = URL_SAFE_NO_PAD.decode(sig).unwrap();
    raw[5] ^= 1;
    let flipped = format!("{input}.{}", b64(&raw));
    assert!(matches!(
        Jwt::parse(&flipped)
            .unwrap()
            .verify(&signer.key, &bearer(), NOW),
        Err(AuthnError::BadSignature)
    ));
    // The claims changed under the same signature.
    let other = b64(with(good(), "sub", json!("mallory")).to_string().as_bytes());
    let (header, rest) = token.split_once('.').unwrap();
    let (_, sig) = rest.split_once('.').unwrap();
    let swapped = format!("{header}.{other}.{sig}");
    assert!(matches!(
        Jwt::parse(&swapped)
            .unwrap()
            .verify(&signer.key, &bearer(), NOW),
        Err(AuthnError::BadSignature)
    ));
    // Another key of the same kind does not verify it.
    assert!(matches!(
        Jwt::parse(&token)
            .unwrap()
            .verify(&self::signer().key, &bearer(), NOW),
        Err(AuthnError::BadSignature)
    ));
}

#[test]
fn the_header_alg_must_be_the_keys() {
    let signer = signer();
    for alg in ["RS256", "ES384", "EdDSA", "HS256"] {
        let token = signer.sign(&json!({"alg": alg, "kid": "k1"}), &good());
        assert!(
            matches!(
                Jwt::parse(&token)
                    .unwrap()
                    .verify(&signer.key, &bearer(), NOW),
                Err(AuthnError::AlgorithmMismatch(_))
            ),
            "{alg}"
        );
    }
    let none = signer.sign(&json!({"alg": "none", "kid": "k1"}), &good());
    assert!(matches!(Jwt::parse(&none), Err(AuthnError::Malformed)));
}

#[test]
fn time_claims() {
    let signer = signer();
    assert!(matches!(
        signer.check(with(good(), "exp", json!(NOW - 31))),
        Err(AuthnError::Expired)
    ));
    signer.check(with(good(), "exp", json!(NOW - 30))).unwrap();
    assert!(matches!(
        signer.check(with(good(), "exp", json!("tomorrow"))),
        Err(AuthnError::BadClaim(c)) if c == "exp"
    ));
    assert!(matches!(
        signer.check(with(good(), "exp", json!(-5))),
        Err(AuthnError::BadClaim(c)) if c == "exp"
    ));
    assert!(matches!(
        signer.check(without(good(), "exp")),
        Err(AuthnError::BadClaim(c)) if c == "exp"
    ));
    assert!(matches!(
        signer.check(with(good(), "nbf", json!(NOW + 31))),
        Err(AuthnError::NotYetValid)
    ));
    signer.check(with(good(), "nbf", json!(NOW + 30))).unwrap();
    assert!(matches!(
        signer.check(with(good(), "nbf", json!(true))),
        Err(AuthnError::BadClaim(c)) if c == "nbf"
    ));
    assert!(matches!(
        signer.check(with(good(), "iat", json!(NOW + 31))),
        Err(AuthnError::NotYetValid)
    ));
    assert!(matches!(
        signer.check(with(good(), "iat", json!("now"))),
        Err(AuthnError::BadClaim(c)) if c == "iat"
    ));
    // Unchecked when not asked: a logout token's `nbf`, a security event's `exp`.
    let token = signer.token(&with(without(good(), "exp"), "nbf", json!(NOW + 999)));
    let lenient = Checks {
        required: &["iss", "aud"],
        exp: false,
        nbf: false,
        ..bearer()
    };
    Jwt::parse(&token)
        .unwrap()
        .verify(&signer.key, &lenient, NOW)
        .unwrap();
}

#[test]
fn issuer_audience_and_subject() {
    let signer = signer();
    assert!(matches!(
        signer.check(with(good(), "iss", json!("https://evil.example"))),
        Err(AuthnError::WrongIssuer)
    ));
    assert!(matches!(
        signer.check(with(good(), "iss", json!(7))),
        Err(AuthnError::BadClaim(c)) if c == "iss"
    ));
    assert!(matches!(
        signer.check(with(good(), "aud", json!("someone-else"))),
        Err(AuthnError::WrongAudience)
    ));
    assert!(matches!(
        signer.check(with(good(), "aud", json!([]))),
        Err(AuthnError::WrongAudience)
    ));
    assert!(matches!(
        signer.check(with(good(), "aud", json!(["api", 3]))),
        Err(AuthnError::BadClaim(c)) if c == "aud"
    ));
    assert!(matches!(
        signer.check(without(good(), "aud")),
        Err(AuthnError::BadClaim(c)) if c == "aud"
    ));
    assert!(matches!(
        signer.check(without(good(), "sub")),
        Err(AuthnError::BadClaim(c)) if c == "sub"
    ));
    assert!(matches!(
        signer.check(with(good(), "sub", json!(42))),
        Err(AuthnError::BadClaim(c)) if c == "sub"
    ));
    // What is read before the signature: `iss` a string, `sub` a string when present.
    let token = signer.token(&with(good(), "sub", json!(42)));
    assert!(matches!(
        claimed(&Jwt::parse(&token).unwrap()),
        Err(AuthnError::Malformed)
    ));
    let long = "x".repeat(257);
    let token = signer.token(&with(good(), "sub", json!(long)));
    let read = claimed(&Jwt::parse(&token).unwrap()).unwrap();
    assert_eq!((read.issuer.as_str(), read.subject), (ISSUER, None));
}

#[test]
fn malformed_tokens() {
    let signer = signer();
    let token = signer.token(&good());
    let malformed = [
        format!("{token}.x"),
        token.rsplit_once('.').unwrap().0.to_owned(),
        format!("{token}="),
        format!("={token}"),
        token.replacen('.', ".!", 1),
        format!(
            "{}.{}.{}",
            b64(br#"{"alg":"ES256","kid":"k1"}"#),
            b64(b"[1,2]"),
            "AA"
        ),
        format!("{}.{}.AA", b64(b"not json"), b64(b"{}")),
    ];
    for bad in &malformed {
        assert!(
            matches!(Jwt::parse(bad), Err(AuthnError::Malformed)),
            "{bad}"
        );
    }
    let critical = signer.sign(
        &json!({"alg": "ES256", "kid": "k1", "crit": ["exp"]}),
        &good(),
    );
    assert!(matches!(
        Jwt::parse(&critical),
        Err(AuthnError::UnsupportedCritical)
    ));
}

#[test]
fn a_key_is_used_only_for_its_own_type_and_curve() {
    let signer = signer();
    let point = signer.pair.public_key().as_ref().to_vec();
    let ec = |crv: &str, alg: &str| {
        json!({"kty": "EC", "crv": crv, "kid": "k", "alg": alg,
            "x": b64(&point[1..33]), "y": b64(&point[33..65])})
    };
    for jwk in [
        ec("P-256", "ES384"),
        ec("P-384", "ES384"),
        ec("P-256", "RS256"),
        ec("P-256", "EdDSA"),
        json!({"kty": "RSA", "kid": "k", "alg": "ES256", "n": "AQAB", "e": "AQAB"}),
        json!({"kty": "OKP", "crv": "Ed25519", "kid": "k", "alg": "ES256", "x": b64(&[1; 32])}),
    ] {
        let jwk = serde_json::from_value(jwk.clone()).unwrap();
        assert!(signing_key(&jwk).is_err(), "{jwk:?}");
    }
    // The published point itself, with and without its `alg`.
    let bare = json!({"kty": "EC", "crv": "P-256", "kid": "k",
        "x": b64(&point[1..33]), "y": b64(&point[33..65])});
    let key = signing_key(&serde_json::from_value(bare).unwrap())
        .unwrap()
        .unwrap();
    let token = signer.token(&good());
    Jwt::parse(&token)
        .unwrap()
        .verify(&key, &bearer(), NOW)
        .unwrap();
}

#[test]
fn an_rsa_modulus_published_with_a_leading_zero_is_the_same_key() {
    let pair = signature::RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let public = pair.public_key();
    let n = public.modulus().big_endian_without_leading_zero().to_vec();
    let e = public.exponent().big_endian_without_leading_zero().to_vec();
    let input = format!(
        "{}.{}",
        b64(br#"{"alg":"RS256","kid":"r1"}"#),
        b64(good().to_string().as_bytes())
    );
    let mut sig = vec![0; pair.public_modulus_len()];
    pair.sign(
        &signature::RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .unwrap();
    let token = format!("{input}.{}", b64(&sig));
    let padded = [&[0u8][..], &n].concat();
    for modulus in [n.clone(), padded] {
        let jwk =
            json!({"kty": "RSA", "kid": "r1", "alg": "RS256", "n": b64(&modulus), "e": b64(&e)});
        let key = signing_key(&serde_json::from_value(jwk).unwrap())
            .unwrap()
            .unwrap();
        Jwt::parse(&token)
            .unwrap()
            .verify(&key, &bearer(), NOW)
            .unwrap();
    }
    // The same key bound to PS256 does not take a PKCS#1 v1.5 signature.
    let jwk = json!({"kty": "RSA", "kid": "r1", "alg": "PS256", "n": b64(&n), "e": b64(&e)});
    let pss = signing_key(&serde_json::from_value(jwk).unwrap())
        .unwrap()
        .unwrap();
    assert!(matches!(
        Jwt::parse(&token).unwrap().verify(&pss, &bearer(), NOW),
        Err(AuthnError::AlgorithmMismatch(_))
    ));
}
