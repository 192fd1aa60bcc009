//! Who is calling the MWAA-compatible API: the request's AWS Signature V4 (service `airflow`,
//! any region), checked against the secret of the tenant's access key it names. A key that is
//! unknown or revoked, a wrong signature, a tampered body or a time more than 15 minutes off are
//! refused with AWS's own error codes; the key's tenant and role then act as a bearer token's.

use axum::body::Bytes;
use axum::extract::{FromRequest, OriginalUri, Request};
use axum::http::{header, StatusCode};
use hangar_tenants::sigv4;
use secrecy::ExposeSecret;

use super::MwaaError;
use crate::api::AppState;
use crate::auth::{Actor, Credential, Principal, TokenKind};

/// The service name MWAA's requests are signed for.
pub const SERVICE: &str = "airflow";
/// How far a request's time may be from the control plane's.
pub const MAX_SKEW: chrono::Duration = chrono::Duration::minutes(15);
/// The largest body the API reads (InvokeRestApi carries a REST call's body).
const BODY_LIMIT: usize = 1024 * 1024;

/// A request whose signature checked out: its caller, the region it was signed for (ARNs
/// carry it), its raw query and its body.
pub struct Signed {
    pub actor: Actor,
    pub access_key_id: String,
    /// The `Host` the caller reached the control plane on.
    pub host: String,
    pub tenant: String,
    pub region: String,
    pub query: String,
    pub body: Bytes,
}

fn refused(code: &'static str, message: impl Into<String>) -> MwaaError {
    MwaaError::new(StatusCode::FORBIDDEN, code, message)
}

/// AWS's answer to each way a signature can fail.
fn signature_error(e: &sigv4::SigV4Error) -> MwaaError {
    use sigv4::SigV4Error as E;
    match e {
        E::Skewed { .. } => refused(
            "InvalidSignatureException",
            format!("Signature expired: {e}"),
        ),
        E::SignatureMismatch => refused(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided.",
        ),
        E::PayloadHashMismatch => refused(
            "InvalidSignatureException",
            "The provided x-amz-content-sha256 header does not match what was computed.",
        ),
        // A credential that cannot be read is refused as a wrong one is (403, as API Gateway
        // answers an incomplete signature), not as a malformed request.
        other => refused("IncompleteSignatureException", other.to_string()),
    }
}

impl FromRequest<AppState> for Signed {
    type Rejection = MwaaError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        // The path as the client signed it, before the router took `/mwaa` off.
        let uri = parts
            .extensions
            .get::<OriginalUri>()
            .map_or_else(|| parts.uri.clone(), |o| o.0.clone());
        let body = axum::body::to_bytes(body, BODY_LIMIT).await.map_err(|_| {
            MwaaError::validation(format!("the body is larger than {BODY_LIMIT} bytes"))
        })?;
        let authorization = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                refused(
                    "MissingAuthenticationTokenException",
                    "Missing Authentication Token: sign the request with an access key (AWS Signature V4)",
                )
            })?;
        let auth = sigv4::parse_authorization(authorization).map_err(|e| signature_error(&e))?;
        let holder = state
            .services
            .access_key_holder(&auth.access_key_id)
            .await?
            .ok_or_else(|| {
                refused(
                    "UnrecognizedClientException",
                    "The security token included in the request is invalid.",
                )
            })?;
        let headers: Vec<(&str, &str)> = parts
            .headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
            .collect();
        let request = sigv4::Request {
            method: parts.method.as_str(),
            path: uri.path(),
            query: uri.query().unwrap_or(""),
            headers: &headers,
            body: &body,
        };
        sigv4::verify(
            &request,
            &auth,
            holder.secret.expose_secret(),
            SERVICE,
            chrono::Utc::now(),
            MAX_SKEW,
        )
        .map_err(|e| {
            tracing::info!(access_key_id = %auth.access_key_id, error = %e, "MWAA-compatible API: signature refused");
            signature_error(&e)
        })?;
        let request_id = parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        Ok(Signed {
            access_key_id: auth.access_key_id.clone(),
            host,
            actor: Actor {
                principal: Principal::Tenant {
                    token_id: holder.id,
                    tenant_id: holder.tenant_id,
                    tenant: holder.tenant.clone(),
                    role: holder.role,
                },
                request_id,
                // What a CLI or web login token minted for this caller resolves again when it
                // is used (the key may have been revoked since).
                credential: Credential {
                    kind: TokenKind::AccessKey,
                    hash: auth.access_key_id.clone().into_bytes(),
                },
            },
            tenant: holder.tenant,
            region: auth.region,
            query: uri.query().unwrap_or("").to_owned(),
            body,
        })
    }
}
