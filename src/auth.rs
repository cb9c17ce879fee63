//! Bearer-token authentication of the internal gRPC calls (gateway → pay-svc → order-svc).
//!
//! Servers wrap their business service (not health or reflection, which probes and grpcurl
//! discovery need open) in [`RequireBearer`]; clients add the header with [`AttachBearer`].
//! pay-svc also takes the gateway's own, narrower token: [`RequireBearer`] marks each call
//! with the [`Access`] its token gives, and the methods the gateway does not call refuse
//! [`Access::Gateway`] ([`require_full_access`]). Tokens are compared in constant time and
//! never logged.

use secrecy::{ExposeSecret, SecretString};
use subtle::{Choice, ConstantTimeEq};
use tonic::{
    Request, Status,
    metadata::{AsciiMetadataValue, MetadataValue},
    service::Interceptor,
};

/// The shortest token accepted; shorter ones are guessable.
pub const MIN_TOKEN_LEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "GRPC_AUTH_TOKEN: required (or GRPC_AUTH_TOKEN_FILE); set GRPC_ALLOW_UNAUTHENTICATED=true to run without authentication on a trusted network"
    )]
    Missing,
    #[error("GRPC_AUTH_TOKEN_FILE: cannot read `{path}`: {source}")]
    File {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("GRPC_AUTH_TOKEN: {}", TokenShape::TooShort)]
    TooShort,
    #[error("GRPC_AUTH_TOKEN: {}", TokenShape::NotAscii)]
    NotAscii,
}

/// What is wrong with a token's shape, without naming the setting that holds it: for a token
/// under another name than GRPC_AUTH_TOKEN (pay-svc's ORDER_SVC_AUTH_TOKEN and
/// GATEWAY_AUTH_TOKEN).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenShape {
    #[error("must be at least {MIN_TOKEN_LEN} characters")]
    TooShort,
    #[error("must be printable ASCII without spaces")]
    NotAscii,
}

/// The token a service runs with, from the setting or its file, checked. Authentication is on
/// by default: with neither given, the start fails unless `allow_unauthenticated` is set.
pub fn resolve_token(
    token: Option<&SecretString>,
    file: Option<&std::path::PathBuf>,
    allow_unauthenticated: bool,
) -> Result<Option<SecretString>, AuthError> {
    let token = match file {
        Some(path) => Some(SecretString::from(
            std::fs::read_to_string(path)
                .map_err(|source| AuthError::File {
                    path: path.clone(),
                    source,
                })?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
        )),
        None => token.cloned(),
    };
    match token {
        Some(token) => {
            validate_token(&token)?;
            Ok(Some(token))
        }
        None if allow_unauthenticated => {
            tracing::warn!("internal gRPC authentication is OFF (GRPC_ALLOW_UNAUTHENTICATED)");
            Ok(None)
        }
        None => Err(AuthError::Missing),
    }
}

/// Checks a token's shape at start-up, so a bad one stops the service with a clear line.
pub fn validate_token(token: &SecretString) -> Result<(), AuthError> {
    check_token_shape(token).map_err(|shape| match shape {
        TokenShape::TooShort => AuthError::TooShort,
        TokenShape::NotAscii => AuthError::NotAscii,
    })
}

/// [`validate_token`]'s rules, for a caller that names the setting itself.
pub fn check_token_shape(token: &SecretString) -> Result<(), TokenShape> {
    let token = token.expose_secret();
    if token.len() < MIN_TOKEN_LEN {
        return Err(TokenShape::TooShort);
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(TokenShape::NotAscii);
    }
    Ok(())
}

/// What a call may do, by the token it presented; [`RequireBearer`] puts it in every request's
/// extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// The service's own token (GRPC_AUTH_TOKEN), or authentication turned off: every method.
    Full,
    /// pay-svc's GATEWAY_AUTH_TOKEN: only what the gateway calls (ConfirmPayment). The gateway
    /// faces the internet, so whoever takes it over holds this token.
    Gateway,
}

/// The answer to a call with the gateway's token to a method it does not open.
fn gateway_denied(method: &str) -> Status {
    tracing::warn!(
        event = "grpc.permission_denied",
        method,
        "call with the gateway's token to a method it does not open"
    );
    Status::permission_denied(
        "the gateway's token (GATEWAY_AUTH_TOKEN) opens ConfirmPayment only; call this method \
         with GRPC_AUTH_TOKEN",
    )
}

/// Refuses a call with PERMISSION_DENIED unless its token opens every method: the second
/// line, inside the handlers the gateway has no business calling, behind [`GatewayMethods`].
/// A request [`RequireBearer`] never saw is refused as INTERNAL (a wiring mistake, not a
/// caller's).
pub fn require_full_access<T>(request: &Request<T>) -> Result<(), Status> {
    match request.extensions().get::<Access>() {
        Some(Access::Full) => Ok(()),
        Some(Access::Gateway) => Err(gateway_denied("")),
        None => {
            tracing::error!(
                event = "grpc.unchecked_request",
                "a request reached a handler without passing RequireBearer"
            );
            Err(Status::internal("request not checked by RequireBearer"))
        }
    }
}

/// Server side, between [`RequireBearer`] and a service: a call marked [`Access::Gateway`]
/// reaches only the methods listed (full gRPC paths) and every other one, including any the
/// service gains later, is answered PERMISSION_DENIED before it is decoded. Deny by default,
/// so that no handler has to remember to close itself.
#[derive(Clone, Debug)]
pub struct GatewayMethods<S> {
    inner: S,
    allowed: &'static [&'static str],
}

impl<S> GatewayMethods<S> {
    pub fn new(inner: S, allowed: &'static [&'static str]) -> Self {
        GatewayMethods { inner, allowed }
    }
}

impl<S, B, ResBody> tower::Service<http::Request<B>> for GatewayMethods<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<ResBody>>,
    ResBody: Default,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future =
        futures::future::Either<std::future::Ready<Result<Self::Response, Self::Error>>, S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request.uri().path();
        let gateway = request.extensions().get::<Access>() == Some(&Access::Gateway);
        if gateway && !self.allowed.contains(&method) {
            let denied = gateway_denied(method).into_http();
            return futures::future::Either::Left(std::future::ready(Ok(denied)));
        }
        futures::future::Either::Right(self.inner.call(request))
    }
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for GatewayMethods<S> {
    const NAME: &'static str = S::NAME;
}

/// Server side: refuses calls without `authorization: Bearer <token>`, and marks the others
/// with their [`Access`]. With no token configured (authentication explicitly turned off)
/// every call passes, with full access.
#[derive(Clone)]
pub struct RequireBearer {
    expected: Option<std::sync::Arc<[u8]>>,
    /// The gateway's header, when it has a token of its own.
    gateway: Option<std::sync::Arc<[u8]>>,
}

impl std::fmt::Debug for RequireBearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the tokens themselves.
        f.debug_struct("RequireBearer")
            .field("enabled", &self.expected.is_some())
            .field("gateway_token", &self.gateway.is_some())
            .finish()
    }
}

impl RequireBearer {
    pub fn new(token: Option<&SecretString>) -> Self {
        RequireBearer {
            expected: token.map(bearer_header),
            gateway: None,
        }
    }

    /// Also accepts the gateway's token, with [`Access::Gateway`]. Without a token of the
    /// service's own (authentication off) it changes nothing: every call passes anyway.
    pub fn with_gateway_token(self, token: Option<&SecretString>) -> Self {
        RequireBearer {
            gateway: token.map(bearer_header),
            ..self
        }
    }
}

fn bearer_header(token: &SecretString) -> std::sync::Arc<[u8]> {
    format!("Bearer {}", token.expose_secret())
        .into_bytes()
        .into()
}

impl Interceptor for RequireBearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.expected else {
            request.extensions_mut().insert(Access::Full);
            return Ok(request);
        };
        let presented = request
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        // Both compared whichever matches, so the time taken does not tell them apart.
        let full = presented.ct_eq(expected);
        let gateway = self
            .gateway
            .as_ref()
            .map_or(Choice::from(0), |gateway| presented.ct_eq(gateway));
        let access = if bool::from(full) {
            Access::Full
        } else if bool::from(gateway) {
            Access::Gateway
        } else {
            tracing::warn!(
                event = "grpc.unauthenticated",
                "call without a valid bearer token"
            );
            return Err(Status::unauthenticated("missing or invalid bearer token"));
        };
        request.extensions_mut().insert(access);
        Ok(request)
    }
}

/// Client side: adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct AttachBearer {
    header: Option<AsciiMetadataValue>,
}

impl AttachBearer {
    pub fn new(token: Option<&SecretString>) -> Result<Self, AuthError> {
        let header = token
            .map(|t| {
                let mut value = MetadataValue::try_from(format!("Bearer {}", t.expose_secret()))
                    .map_err(|_| AuthError::NotAscii)?;
                value.set_sensitive(true);
                Ok(value)
            })
            .transpose()?;
        Ok(AttachBearer { header })
    }
}

impl Interceptor for AttachBearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(header) = &self.header {
            request
                .metadata_mut()
                .insert("authorization", header.clone());
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(s: &str) -> SecretString {
        s.to_owned().into()
    }

    #[test]
    fn attached_token_is_accepted_and_others_refused() {
        let good = token("0123456789abcdef-demo");
        let mut server = RequireBearer::new(Some(&good));
        let mut client = AttachBearer::new(Some(&good)).unwrap();
        assert!(server.call(client.call(Request::new(())).unwrap()).is_ok());

        let mut wrong = AttachBearer::new(Some(&token("0123456789abcdef-other"))).unwrap();
        let refused = server
            .call(wrong.call(Request::new(())).unwrap())
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        assert!(!refused.message().contains("demo"));

        let refused = server.call(Request::new(())).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    }

    #[test]
    fn no_token_means_no_check() {
        let mut server = RequireBearer::new(None);
        let passed = server.call(Request::new(())).unwrap();
        assert_eq!(passed.extensions().get(), Some(&Access::Full));
        assert!(require_full_access(&passed).is_ok());
    }

    #[test]
    fn the_gateways_token_passes_with_gateway_access_only() {
        let own = token("0123456789abcdef-own");
        let gateways = token("0123456789abcdef-gateway");
        let mut server = RequireBearer::new(Some(&own)).with_gateway_token(Some(&gateways));
        let debug = format!("{server:?}");
        assert!(!debug.contains("0123456789abcdef"), "{debug}");

        let call = |server: &mut RequireBearer, token: &SecretString| {
            let mut client = AttachBearer::new(Some(token)).unwrap();
            server.call(client.call(Request::new(())).unwrap())
        };
        let full = call(&mut server, &own).unwrap();
        assert_eq!(full.extensions().get(), Some(&Access::Full));
        assert!(require_full_access(&full).is_ok());

        let gateway = call(&mut server, &gateways).unwrap();
        assert_eq!(gateway.extensions().get(), Some(&Access::Gateway));
        let denied = require_full_access(&gateway).unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        assert!(
            denied.message().contains("GATEWAY_AUTH_TOKEN"),
            "{denied:?}"
        );
        assert!(!denied.message().contains("0123456789abcdef"), "{denied:?}");

        let refused = call(&mut server, &token("0123456789abcdef-other")).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        let refused = server.call(Request::new(())).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);

        // A request the interceptor never saw is not taken for a trusted one.
        let unmarked = require_full_access(&Request::new(())).unwrap_err();
        assert_eq!(unmarked.code(), tonic::Code::Internal);
    }

    /// The gateway's calls reach the listed methods only; any other path, one the service
    /// does not have yet included, is refused before the service sees it.
    #[tokio::test]
    async fn the_gateway_reaches_only_the_listed_methods() {
        use tower::ServiceExt;
        const ALLOWED: &[&str] = &["/pay.v1.PayService/ConfirmPayment"];
        let reached = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let service = {
            let reached = reached.clone();
            GatewayMethods::new(
                tower::service_fn(move |_: http::Request<()>| {
                    reached.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    std::future::ready(Ok::<_, std::convert::Infallible>(http::Response::new(
                        String::from("served"),
                    )))
                }),
                ALLOWED,
            )
        };
        let call = |path: &str, access: Option<Access>| {
            let mut request = http::Request::builder().uri(path).body(()).unwrap();
            if let Some(access) = access {
                request.extensions_mut().insert(access);
            }
            service.clone().oneshot(request)
        };
        let grpc_status = |response: &http::Response<String>| {
            response
                .headers()
                .get("grpc-status")
                .map(|v| v.to_str().unwrap().to_owned())
        };

        let served = call(ALLOWED[0], Some(Access::Gateway)).await.unwrap();
        assert_eq!(served.body(), "served");
        for path in [
            "/pay.v1.PayService/CreateNativePay",
            "/pay.v1.PayService/QueryOrder",
            "/pay.v1.PayService/AMethodAddedLater",
        ] {
            let denied = call(path, Some(Access::Gateway)).await.unwrap();
            // 7 = PERMISSION_DENIED
            assert_eq!(grpc_status(&denied).as_deref(), Some("7"), "{path}");
            let served = call(path, Some(Access::Full)).await.unwrap();
            assert_eq!(served.body(), "served", "{path}");
        }
        assert_eq!(reached.load(std::sync::atomic::Ordering::SeqCst), 4);
    }

    #[test]
    fn short_or_odd_tokens_are_refused_at_start() {
        assert!(matches!(
            validate_token(&token("short")),
            Err(AuthError::TooShort)
        ));
        assert!(matches!(
            validate_token(&token("0123456789abcdef ghi")),
            Err(AuthError::NotAscii)
        ));
        assert!(validate_token(&token("0123456789abcdef")).is_ok());
        assert_eq!(
            AuthError::TooShort.to_string(),
            format!("GRPC_AUTH_TOKEN: must be at least {MIN_TOKEN_LEN} characters")
        );
        assert_eq!(
            check_token_shape(&token("short")),
            Err(TokenShape::TooShort)
        );
    }

    #[test]
    fn a_token_is_required_unless_explicitly_waived() {
        assert!(matches!(
            resolve_token(None, None, false),
            Err(AuthError::Missing)
        ));
        assert!(resolve_token(None, None, true).unwrap().is_none());
        let path = std::env::temp_dir().join(format!("tok-{}", crate::wxpay::time::nonce_str()));
        std::fs::write(&path, "0123456789abcdef-from-file\n").unwrap();
        let from_file = resolve_token(None, Some(&path), false).unwrap().unwrap();
        assert_eq!(from_file.expose_secret(), "0123456789abcdef-from-file");
        assert!(matches!(
            resolve_token(None, Some(&std::path::PathBuf::from("/nonexistent")), true),
            Err(AuthError::File { .. })
        ));
    }
}
