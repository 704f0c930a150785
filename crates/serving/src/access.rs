//! Who may change deployments: the checks on the Cloud ML Engine calls that create, delete or
//! re-default models and versions, and the CORS answers that go with them.
//!
//! A browser lets any web page send "simple" cross-origin requests (a form POST, `text/plain`
//! bodies) to a server on the user's machine, without asking the server first. Without these
//! checks such a page could deploy a model from any `deploymentUri` on a server without a token
//! (cross-site request forgery). So a mutating call:
//! - is refused outright on a non-loopback address without `--auth-token-file`, unless
//!   `--allow-unauthenticated-changes` says that is intended (predictions and reads stay on,
//!   as in TF Serving);
//! - needs the bearer token when the server has one (401);
//! - is refused when it carries an `Origin` header (browsers add it to cross-origin requests)
//!   that is not listed with `--cors-allow-origin` (403);
//! - with a body (POST), needs `Content-Type: application/json` (415), which a page can only
//!   send after a CORS preflight;
//! - and the preflight answers no wildcard for mutations: only listed origins are allowed.
//!
//! Predictions and reads keep TF Serving's open CORS answer (`Access-Control-Allow-Origin: *`).

use std::net::SocketAddr;

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use crate::server::ServeConfig;
use crate::status::{ApiError, Code, Refusal};

/// The access rules of one server, fixed at start-up.
#[derive(Debug, Clone)]
pub struct AccessRules {
    token: Option<String>,
    /// Browser origins (`scheme://host[:port]`) allowed to change deployments.
    cors_origins: Vec<String>,
    /// Why mutating calls are off, when they are.
    changes_off: Option<String>,
}

impl AccessRules {
    /// The rules for `config`, listening on `bound` (which may differ from `config.addr` when
    /// port 0 was asked for).
    pub fn new(config: &ServeConfig, bound: SocketAddr) -> AccessRules {
        let changes_off = (config.auth_token.is_none()
            && !bound.ip().is_loopback()
            && !config.allow_unauthenticated_changes)
            .then(|| {
                format!(
                    "Changing deployments is turned off: this server listens on {} without \
                     --auth-token-file. Start it with --auth-token-file (or \
                     --allow-unauthenticated-changes) to create, delete or re-default models \
                     and versions; predictions and reads work as they are.",
                    bound.ip()
                )
            });
        AccessRules {
            token: config.auth_token.clone(),
            cors_origins: config
                .cors_origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
            changes_off,
        }
    }

    /// Whether a browser page from `origin` may change deployments.
    fn origin_allowed(&self, origin: &str) -> bool {
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        self.cors_origins.contains(&origin)
    }

    /// Every check on a call that changes deployments (see the module documentation).
    pub fn check_change(&self, method: &Method, headers: &HeaderMap) -> Result<(), Refusal> {
        if let Some(reason) = &self.changes_off {
            return Err(ApiError::new(Code::PermissionDenied, reason.clone()).into());
        }
        self.check_token(headers)?;
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("<not text>");
            if !self.origin_allowed(origin) {
                return Err(ApiError::new(
                    Code::PermissionDenied,
                    format!(
                        "Cross-origin request from {origin:?} refused: only origins given with \
                         --cors-allow-origin may change deployments"
                    ),
                )
                .into());
            }
        }
        if *method == Method::POST && !is_json(headers) {
            let given = headers
                .get(header::CONTENT_TYPE)
                .map(|v| format!("{:?}", v.to_str().unwrap_or("<not text>")))
                .unwrap_or_else(|| "none".to_string());
            return Err(Refusal {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                error: ApiError::invalid(format!(
                    "This call needs \"Content-Type: application/json\"; the request has {given}"
                )),
            });
        }
        Ok(())
    }

    fn check_token(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(expected) = &self.token else {
            return Ok(());
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match given {
            Some(token) if constant_time_eq(token.as_bytes(), expected.as_bytes()) => Ok(()),
            Some(_) => Err(ApiError::new(
                Code::Unauthenticated,
                "The bearer token is not valid",
            )),
            None => Err(ApiError::new(
                Code::Unauthenticated,
                "This call changes the server's deployments and needs an \"Authorization: Bearer <token>\" header",
            )),
        }
    }

    /// The CORS preflight answer. `mutating`: the preflight asks for a call that changes
    /// deployments, which only listed origins get; others get the open answer.
    pub fn preflight(&self, headers: &HeaderMap, mutating: bool) -> Result<HeaderMap, ApiError> {
        let origin = headers
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .filter(|o| o.starts_with("http://") || o.starts_with("https://"))
            .ok_or_else(|| ApiError::invalid("Origin header is missing in CORS preflight"))?;
        let mut answer = HeaderMap::new();
        if mutating {
            if !self.origin_allowed(origin) {
                return Err(ApiError::new(
                    Code::PermissionDenied,
                    format!(
                        "Cross-origin request from {origin:?} refused: only origins given with \
                         --cors-allow-origin may change deployments"
                    ),
                ));
            }
            let echoed = HeaderValue::from_str(origin)
                .map_err(|_| ApiError::invalid("Origin header is not valid"))?;
            answer.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, echoed);
            answer.insert(header::VARY, HeaderValue::from_static("Origin"));
            answer.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("POST, GET, DELETE"),
            );
            answer.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("Content-Type, Authorization"),
            );
        } else {
            answer.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
            answer.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("POST, GET"),
            );
            answer.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("Content-Type"),
            );
        }
        Ok(answer)
    }
}

/// `application/json`, with or without parameters such as `charset`.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// Whether an OPTIONS preflight for `path` asks for a call that changes deployments: a Cloud ML
/// Engine resource call with a method other than GET/HEAD, other than `:predict`.
pub fn preflight_is_mutating(path: &str, headers: &HeaderMap) -> bool {
    let requested = headers
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("POST");
    let reads = requested.eq_ignore_ascii_case("GET") || requested.eq_ignore_ascii_case("HEAD");
    let predict = path
        .rsplit_once(':')
        .is_some_and(|(_, verb)| verb.eq_ignore_ascii_case("predict"));
    let cmle = path.len() >= "/v1/projects/".len()
        && path.as_bytes()[.."/v1/projects/".len()].eq_ignore_ascii_case(b"/v1/projects/");
    cmle && !reads && !predict
}

/// Compares without stopping at the first difference, so timing does not reveal the prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(token: Option<&str>, cors: &[&str], addr: &str) -> AccessRules {
        let mut config = ServeConfig::new("memory://registry");
        config.auth_token = token.map(str::to_string);
        config.cors_origins = cors.iter().map(|s| s.to_string()).collect();
        AccessRules::new(&config, addr.parse().unwrap())
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn changes_need_json_and_a_listed_origin() {
        let open = rules(None, &["http://ui.example:8080"], "127.0.0.1:8501");
        let json = headers(&[("content-type", "application/json; charset=utf-8")]);
        assert!(open.check_change(&Method::POST, &json).is_ok());
        let plain = headers(&[("content-type", "text/plain")]);
        let refused = open.check_change(&Method::POST, &plain).unwrap_err();
        assert_eq!(refused.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(refused.error.message.contains("\"text/plain\""));
        assert!(
            open.check_change(&Method::DELETE, &HeaderMap::new())
                .is_ok()
        );
        let evil = headers(&[
            ("content-type", "application/json"),
            ("origin", "http://evil.example"),
        ]);
        let refused = open.check_change(&Method::POST, &evil).unwrap_err();
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert!(refused.error.message.contains("http://evil.example"));
        let listed = headers(&[
            ("content-type", "application/json"),
            ("origin", "http://UI.example:8080"),
        ]);
        assert!(open.check_change(&Method::POST, &listed).is_ok());
    }

    #[test]
    fn non_loopback_without_a_token_refuses_changes() {
        let exposed = rules(None, &[], "0.0.0.0:8501");
        let json = headers(&[("content-type", "application/json")]);
        let refused = exposed.check_change(&Method::POST, &json).unwrap_err();
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert!(refused.error.message.contains("--auth-token-file"));
        let with_token = rules(Some("t"), &[], "0.0.0.0:8501");
        let authorised = headers(&[
            ("content-type", "application/json"),
            ("authorization", "Bearer t"),
        ]);
        assert!(with_token.check_change(&Method::POST, &authorised).is_ok());
        let mut config = ServeConfig::new("memory://registry");
        config.allow_unauthenticated_changes = true;
        let allowed = AccessRules::new(&config, "0.0.0.0:8501".parse().unwrap());
        assert!(allowed.check_change(&Method::POST, &json).is_ok());
    }

    #[test]
    fn preflight_has_no_wildcard_for_changes() {
        let open = rules(None, &["http://ui.example"], "127.0.0.1:8501");
        let models = "/v1/projects/default/models";
        let post = headers(&[
            ("origin", "http://evil.example"),
            ("access-control-request-method", "POST"),
        ]);
        assert!(preflight_is_mutating(models, &post));
        assert!(open.preflight(&post, true).is_err());
        let listed = headers(&[
            ("origin", "http://ui.example"),
            ("access-control-request-method", "POST"),
        ]);
        let answer = open.preflight(&listed, true).unwrap();
        assert_eq!(
            answer[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "http://ui.example"
        );
        assert!(!preflight_is_mutating(
            "/v1/projects/default/models/m:predict",
            &post
        ));
        assert!(!preflight_is_mutating("/v1/models/m:predict", &post));
        let get = headers(&[
            ("origin", "http://evil.example"),
            ("access-control-request-method", "GET"),
        ]);
        assert!(!preflight_is_mutating(models, &get));
        assert_eq!(
            open.preflight(&get, false).unwrap()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "*"
        );
    }
}
