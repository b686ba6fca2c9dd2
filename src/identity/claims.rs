//! GitLab ID-token claims.

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};

/// The claims of a GitLab ID token that roles and bindings use. GitLab encodes most of them as
/// strings (`project_id: "42"`, `ref_protected: "true"`); numbers and booleans are accepted too.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct Claims {
    /// Issuer.
    #[serde(default)]
    pub iss: String,
    /// Subject, e.g. `project_path:grp/app:ref_type:branch:ref:main`.
    #[serde(default)]
    pub sub: String,
    /// Audiences.
    #[serde(default, deserialize_with = "one_or_many")]
    pub aud: Vec<String>,
    /// Expiry (unix seconds).
    #[serde(default)]
    pub exp: Option<i64>,
    /// Not before (unix seconds).
    #[serde(default)]
    pub nbf: Option<i64>,
    /// Issued at (unix seconds).
    #[serde(default)]
    pub iat: Option<i64>,
    /// Key id is in the header, not here; these are GitLab's claims:
    #[serde(default, deserialize_with = "stringly")]
    pub project_id: Option<String>,
    /// `grp/app`.
    #[serde(default, deserialize_with = "stringly")]
    pub project_path: Option<String>,
    /// `grp`.
    #[serde(default, deserialize_with = "stringly")]
    pub namespace_path: Option<String>,
    /// Namespace id.
    #[serde(default, deserialize_with = "stringly")]
    pub namespace_id: Option<String>,
    /// Branch or tag.
    #[serde(rename = "ref", default, deserialize_with = "stringly")]
    pub git_ref: Option<String>,
    /// `branch` or `tag`.
    #[serde(default, deserialize_with = "stringly")]
    pub ref_type: Option<String>,
    /// `"true"` or `"false"`.
    #[serde(default, deserialize_with = "stringly")]
    pub ref_protected: Option<String>,
    /// Environment name.
    #[serde(default, deserialize_with = "stringly")]
    pub environment: Option<String>,
    /// `"true"` or `"false"`.
    #[serde(default, deserialize_with = "stringly")]
    pub environment_protected: Option<String>,
    /// `push`, `schedule`, `web`…
    #[serde(default, deserialize_with = "stringly")]
    pub pipeline_source: Option<String>,
    /// The user who started the job.
    #[serde(default, deserialize_with = "stringly")]
    pub user_login: Option<String>,
    /// Job id.
    #[serde(default, deserialize_with = "stringly")]
    pub job_id: Option<String>,
}

impl Claims {
    /// The claims roles usually bind, as `name=value` pairs for refusal messages.
    pub(crate) fn binding_summary(&self) -> String {
        let pairs = [
            ("project_path", self.project_path.as_deref()),
            ("ref", self.git_ref.as_deref()),
            ("ref_type", self.ref_type.as_deref()),
            ("ref_protected", self.ref_protected.as_deref()),
            ("environment", self.environment.as_deref()),
        ];
        let mut parts: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{k}={}", v.unwrap_or("(none)")))
            .collect();
        parts.push(format!(
            "aud={}",
            if self.aud.is_empty() {
                "(none)".into()
            } else {
                self.aud.join(",")
            }
        ));
        parts.join(" ")
    }

    /// A claim by its GitLab name, for templates and rule matching.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        match name {
            "iss" => Some(&self.iss),
            "sub" => Some(&self.sub),
            "project_id" => self.project_id.as_deref(),
            "project_path" => self.project_path.as_deref(),
            "namespace_path" => self.namespace_path.as_deref(),
            "namespace_id" => self.namespace_id.as_deref(),
            "ref" => self.git_ref.as_deref(),
            "ref_type" => self.ref_type.as_deref(),
            "ref_protected" => self.ref_protected.as_deref(),
            "environment" => self.environment.as_deref(),
            "environment_protected" => self.environment_protected.as_deref(),
            "pipeline_source" => self.pipeline_source.as_deref(),
            "user_login" => self.user_login.as_deref(),
            "job_id" => self.job_id.as_deref(),
            _ => None,
        }
    }
}

/// Decodes the claims WITHOUT verifying the signature: for messages only.
pub(crate) fn peek_claims(token: &SecretString) -> Result<Claims, String> {
    let mut parts = token.expose_secret().split('.');
    let (Some(_header), Some(payload), Some(_sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("expected three dot-separated parts".into());
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| "the payload is not base64url".to_owned())?;
    serde_json::from_slice(&bytes)
        .map_err(|e| format!("the payload is not a JSON object ({:?})", e.classify()))
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) => v,
    })
}

fn stringly<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s),
        Some(other) => Some(other.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peeks_gitlab_claims() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
            br#"{"iss":"https://gitlab.example.com","aud":"https://vault.example.com","project_id":"42","project_path":"grp/app","ref":"main","ref_protected":"true","exp":1}"#,
        );
        let token = SecretString::from(format!("e30.{payload}.sig"));
        let claims = peek_claims(&token).expect("decodes");
        assert_eq!(claims.project_id.as_deref(), Some("42"));
        assert_eq!(claims.aud, ["https://vault.example.com"]);
        assert!(claims.binding_summary().contains("ref_protected=true"));
        assert!(peek_claims(&SecretString::from("not-a-jwt")).is_err());
    }
}
