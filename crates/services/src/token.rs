//! user-service's tokens: HS256 JSON Web Tokens, signed with a secret every
//! instance shares.
//!
//! Nothing is stored per session, which is what lets user-service run in
//! cluster mode: a token issued by instance 0 is verified by instance 1.
//! Only the one algorithm the service issues is accepted (no `alg` switching).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, KeyInit as _, Mac as _};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The fixed JOSE header of every token we issue.
const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// The claims we put in a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user name.
    pub sub: String,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Expires at, seconds since the epoch.
    pub exp: u64,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// Not three base64url parts of JSON.
    Malformed,
    /// Not HS256.
    Algorithm,
    /// The signature does not match.
    Signature,
    /// Past `exp`.
    Expired,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Invalid::Malformed => "malformed token",
            Invalid::Algorithm => "unsupported token algorithm",
            Invalid::Signature => "bad token signature",
            Invalid::Expired => "token expired",
        })
    }
}

/// Signs and verifies tokens with one secret.
#[derive(Clone)]
pub struct Signer {
    /// The HMAC key.
    secret: Vec<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer { secret: <hidden> }")
    }
}

/// Seconds since the epoch at `t`.
fn epoch_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Signer {
    /// A signer for `secret`.
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Self {
            secret: secret.into(),
        }
    }

    /// The MAC over `signing_input`.
    fn mac(&self, signing_input: &str) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(signing_input.as_bytes());
        mac
    }

    /// A token for `user`, valid for `ttl` from `now`.
    pub fn issue(&self, user: &str, ttl: Duration, now: SystemTime) -> String {
        let iat = epoch_secs(now);
        let claims = Claims {
            sub: user.to_owned(),
            iat,
            exp: iat.saturating_add(ttl.as_secs()),
        };
        let payload = serde_json::to_vec(&claims).expect("claims serialize");
        let signing_input = format!("{}.{}", B64.encode(HEADER), B64.encode(payload));
        let signature = B64.encode(self.mac(&signing_input).finalize().into_bytes());
        format!("{signing_input}.{signature}")
    }

    /// The claims of `token` if it is ours, intact and unexpired at `now`.
    ///
    /// # Errors
    /// [`Invalid`] says which check failed.
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<Claims, Invalid> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Invalid::Malformed);
        };
        let header: serde_json::Value = B64
            .decode(header)
            .ok()
            .and_then(|h| serde_json::from_slice(&h).ok())
            .ok_or(Invalid::Malformed)?;
        if header.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
            return Err(Invalid::Algorithm);
        }
        let signature = B64.decode(signature).map_err(|_| Invalid::Malformed)?;
        // `verify_slice` compares in constant time.
        self.mac(&token[..header_and_payload_len(token)])
            .verify_slice(&signature)
            .map_err(|_| Invalid::Signature)?;
        let claims: Claims = B64
            .decode(payload)
            .ok()
            .and_then(|p| serde_json::from_slice(&p).ok())
            .ok_or(Invalid::Malformed)?;
        if epoch_secs(now) >= claims.exp {
            return Err(Invalid::Expired);
        }
        Ok(claims)
    }
}

/// The length of `header.payload` in `header.payload.signature`.
fn header_and_payload_len(token: &str) -> usize {
    token.rfind('.').unwrap_or(token.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn an_issued_token_verifies() {
        let signer = Signer::new("s3cret");
        let now = SystemTime::now();
        let token = signer.issue("alice", HOUR, now);
        let claims = signer.verify(&token, now).unwrap();
        assert_eq!(claims.sub, "alice");
        assert_eq!(claims.exp - claims.iat, 3600);
    }

    #[test]
    fn tampering_and_other_secrets_fail() {
        let now = SystemTime::now();
        let token = Signer::new("a").issue("alice", HOUR, now);
        assert_eq!(
            Signer::new("b").verify(&token, now),
            Err(Invalid::Signature)
        );
        let forged = token.replacen('.', ".x", 1);
        assert!(Signer::new("a").verify(&forged, now).is_err());
        assert_eq!(Signer::new("a").verify("a.b", now), Err(Invalid::Malformed));
    }

    #[test]
    fn expiry_and_alg_none_are_refused() {
        let signer = Signer::new("a");
        let now = SystemTime::now();
        let token = signer.issue("alice", HOUR, now);
        assert_eq!(signer.verify(&token, now + HOUR), Err(Invalid::Expired));
        let none = format!(
            "{}.{}.",
            B64.encode(r#"{"alg":"none"}"#),
            token.split('.').nth(1).unwrap()
        );
        assert_eq!(signer.verify(&none, now), Err(Invalid::Algorithm));
    }
}
