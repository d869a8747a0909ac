//! The gateway as an OpenID Connect relying party, for browser logins: the IdP's login endpoints
//! (from discovery), the authorization code exchanged at the token endpoint (the gateway a
//! confidential client, `client_secret_basic`, PKCE's verifier sent along), the ID token
//! validated as OpenID Connect Core section 3.1.3.7 says, and a back-channel `logout_token`
//! validated as OpenID Connect Back-Channel Logout 1.0 section 2.6 says. Both tokens are verified
//! with the same published keys as access tokens, each with the one algorithm its key names.

use std::time::Instant;

use jsonwebtoken::Header;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::authenticator::{Authenticator, now_unix};
use crate::error::AuthnError;
use crate::keys::{KeyStore, LoginEndpoints, SigningKey};
use crate::principal::{AuthMethod, Principal, PrincipalKind};
use crate::token::{Checks, Jwt};

/// The `events` member a logout token carries.
const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// An ID token older than this (by its `iat`) is refused: a login's token is used at once.
const MAX_ID_TOKEN_AGE_S: u64 = 600;

/// What an ID token must say for this login.
pub struct IdTokenExpectations<'a> {
    /// The gateway's client id (`aud`, and `azp` when present).
    pub client_id: &'a str,
    /// The `nonce` sent with this login.
    pub nonce: &'a str,
    /// The `max_age` sent with this login: `auth_time` must then be within it.
    pub max_age_s: Option<u64>,
}

/// A login that succeeded: the person, and the IdP's session they logged in with.
#[derive(Debug, Clone)]
pub struct Login {
    /// The person, with the scopes the IdP granted the gateway's client.
    pub principal: Principal,
    /// The IdP's session id (`sid`), when the ID token names it (back-channel logout uses it).
    pub sid: Option<String>,
}

/// What a verified logout token asks: end the sessions of `sub`, or of the IdP session `sid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logout {
    /// The issuer (a `sid` is unique only within it).
    pub issuer: String,
    /// The subject whose sessions end.
    pub sub: Option<String>,
    /// The IdP session whose sessions end.
    pub sid: Option<String>,
    /// The token's id, to be used only once.
    pub jti: String,
    /// Until when (Unix seconds) the token is valid: its `jti` need be remembered only so long.
    pub exp: u64,
}

/// The token endpoint's answer, as far as the gateway reads it.
#[derive(Deserialize)]
struct TokenResponse {
    id_token: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

impl Authenticator {
    /// The login endpoints of `issuer` (a configured issuer), once its discovery was read.
    pub fn login_endpoints(&self, issuer: &str) -> Option<LoginEndpoints> {
        self.issuer_keys(issuer).ok()?.login_endpoints()
    }

    /// Exchanges an authorization code (with PKCE's verifier) for the login it proves: the ID
    /// token verified, and the principal built from it as from an access token (the same roles
    /// claims and role map, the same MFA rules), with the scopes the IdP says it granted.
    pub async fn complete_login(
        &self,
        issuer: &str,
        client: (&str, &str),
        exchange: (&str, &str, &str),
        expect: &IdTokenExpectations<'_>,
    ) -> Result<Login, AuthnError> {
        let (code, redirect_uri, verifier) = exchange;
        let endpoints = self.login_endpoints(issuer).ok_or_else(|| {
            AuthnError::KeysUnavailable(format!("`{issuer}` has not published its login endpoints"))
        })?;
        let answer: TokenResponse = self
            .client()
            .post_form_json(
                &endpoints.token,
                client,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", code),
                    ("redirect_uri", redirect_uri),
                    ("code_verifier", verifier),
                ],
            )
            .await
            .map_err(AuthnError::LoginFailed)?;
        let id_token = answer.id_token.ok_or_else(|| {
            AuthnError::LoginFailed("the token endpoint answered without an ID token".to_owned())
        })?;
        let claims = self.verify_id_token(issuer, &id_token, expect).await?;
        let mut principal =
            Principal::from_claims(&claims, self.config(), self.roles(), AuthMethod::Session)?;
        principal.kind = PrincipalKind::User;
        principal.client_id = Some(expect.client_id.to_owned());
        principal.scopes = answer
            .scope
            .unwrap_or_default()
            .split_ascii_whitespace()
            .filter(|scope| *scope != "openid" && crate::principal::is_safe_name(scope, true))
            .map(str::to_owned)
            .collect();
        let sid = claims
            .get("sid")
            .and_then(Value::as_str)
            .filter(|sid| crate::principal::is_safe_name(sid, false))
            .map(str::to_owned);
        Ok(Login { principal, sid })
    }

    /// Validates an ID token (OpenID Connect Core section 3.1.3.7): signature with the issuer's
    /// key and its algorithm; `iss`; `aud` exactly the client (no other audience trusted);
    /// `azp`, when present, the client; `exp`; `iat` present and recent; the login's `nonce`;
    /// and `auth_time` within `max_age` when one was asked.
    pub async fn verify_id_token(
        &self,
        issuer: &str,
        token: &str,
        expect: &IdTokenExpectations<'_>,
    ) -> Result<Map<String, Value>, AuthnError> {
        let now = crate::authenticator::now_unix();
        let claims = self
            .verify_for_client(
                issuer,
                Jwt::parse(token)?,
                expect.client_id,
                &["exp", "iat", "sub"],
            )
            .await?;
        let leeway = self.config().leeway_s;
        let iat = claims.get("iat").and_then(Value::as_u64).unwrap_or(0);
        if iat + MAX_ID_TOKEN_AGE_S + leeway < now || iat > now + leeway {
            return Err(AuthnError::LoginFailed(
                "the ID token was not issued just now (iat)".to_owned(),
            ));
        }
        if claims.get("nonce").and_then(Value::as_str) != Some(expect.nonce) {
            return Err(AuthnError::LoginFailed(
                "the ID token's nonce is not this login's".to_owned(),
            ));
        }
        if let Some(max_age) = expect.max_age_s {
            let auth_time = claims.get("auth_time").and_then(Value::as_u64);
            if auth_time.is_none_or(|at| at + max_age + leeway < now) {
                return Err(AuthnError::LoginFailed(
                    "the ID token's auth_time is missing or older than the max_age asked"
                        .to_owned(),
                ));
            }
        }
        Ok(claims)
    }

    /// Validates a back-channel `logout_token` (OpenID Connect Back-Channel Logout 1.0 section
    /// 2.6): signature, `iss` (a configured issuer), `aud` the client, `iat`, `exp`, the
    /// `events` claim naming the back-channel logout event, `sub` or `sid`, no `nonce`, a `jti`,
    /// and `typ`, when given, `logout+jwt`. That the `jti` is used once is the caller's to check
    /// (it is shared by every replica).
    pub async fn verify_logout_token(
        &self,
        token: &str,
        client_id: &str,
    ) -> Result<Logout, AuthnError> {
        let jwt = Jwt::parse(token)?;
        if let Some(typ) = jwt.header.typ.as_deref() {
            let typ = typ.strip_prefix("application/").unwrap_or(typ);
            if !typ.eq_ignore_ascii_case("logout+jwt") && !typ.eq_ignore_ascii_case("JWT") {
                return Err(AuthnError::WrongType);
            }
        }
        let issuer = crate::token::claimed(&jwt)?.issuer;
        let claims = self
            .verify_for_client(&issuer, jwt, client_id, &["iat", "exp", "jti"])
            .await?;
        let bad = |claim: &str| AuthnError::BadClaim(claim.to_owned());
        let is_logout = claims
            .get("events")
            .and_then(Value::as_object)
            .and_then(|events| events.get(BACKCHANNEL_LOGOUT_EVENT))
            .is_some_and(Value::is_object);
        if !is_logout {
            return Err(bad("events"));
        }
        if claims.contains_key("nonce") {
            return Err(bad("nonce"));
        }
        let name = |claim: &str| -> Result<Option<String>, AuthnError> {
            match claims.get(claim) {
                None => Ok(None),
                Some(Value::String(value)) if crate::principal::is_safe_name(value, false) => {
                    Ok(Some(value.clone()))
                }
                Some(_) => Err(bad(claim)),
            }
        };
        let (sub, sid) = (name("sub")?, name("sid")?);
        if sub.is_none() && sid.is_none() {
            return Err(bad("sub"));
        }
        let jti = name("jti")?.ok_or_else(|| bad("jti"))?;
        let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
        Ok(Logout {
            issuer,
            sub,
            sid,
            jti,
            exp,
        })
    }

    /// Verifies a token the IdP issued to the gateway's own client: the issuer's key named by
    /// `kid` (the set fetched again for a key not seen yet), its algorithm only, `iss`, `aud`
    /// exactly `client_id`, `azp` when present, and the `required` claims.
    async fn verify_for_client(
        &self,
        issuer: &str,
        jwt: Jwt<'_>,
        client_id: &str,
        required: &[&str],
    ) -> Result<Map<String, Value>, AuthnError> {
        let arrived = Instant::now();
        let keys = self.issuer_keys(issuer)?;
        let key = key_named(keys, &jwt.header, arrived).await?;
        let mut spec: Vec<&str> = vec!["iss", "aud"];
        spec.extend(
            required
                .iter()
                .filter(|claim| matches!(**claim, "exp" | "nbf" | "sub")),
        );
        let checks = Checks {
            issuer,
            audience: &[client_id.to_owned()],
            required: &spec,
            exp: required.contains(&"exp"),
            nbf: false,
            iat: false,
            leeway_s: self.config().leeway_s,
        };
        let claims = jwt.verify(&key, &checks, now_unix())?;
        // One audience only: a token also meant for someone else is not the gateway's.
        let audiences = match claims.get("aud") {
            Some(Value::String(one)) => vec![one.as_str()],
            Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if audiences != [client_id] {
            return Err(AuthnError::WrongAudience);
        }
        if let Some(azp) = claims.get("azp")
            && azp.as_str() != Some(client_id)
        {
            return Err(AuthnError::BadClaim("azp".to_owned()));
        }
        for claim in required {
            if !claims.contains_key(*claim) {
                return Err(AuthnError::BadClaim((*claim).to_owned()));
            }
        }
        Ok(claims)
    }

    /// The key store of a configured issuer.
    fn issuer_keys(&self, issuer: &str) -> Result<&KeyStore, AuthnError> {
        self.issuer_stores()
            .find(|keys| keys.issuer() == issuer)
            .ok_or(AuthnError::WrongIssuer)
    }
}

/// The key a token's `kid` names, fetching the set again once for a key not seen yet.
async fn key_named(
    keys: &KeyStore,
    header: &Header,
    arrived: Instant,
) -> Result<std::sync::Arc<SigningKey>, AuthnError> {
    let kid = header.kid.as_deref().ok_or(AuthnError::UnknownSigningKey)?;
    if let Some(key) = keys.get(kid)? {
        return Ok(key);
    }
    keys.refresh_for_unknown_kid(arrived).await?;
    keys.get(kid)?.ok_or(AuthnError::UnknownSigningKey)
}
