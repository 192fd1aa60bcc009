//! The Kubernetes side's failures and how the agent's error policy reads them (as kube-rs's
//! `controller-rs` does): an object the API server refuses as invalid (400, 422) cannot be
//! fixed by retrying the same revision, so it is permanent; a conflict (409) is retried once by
//! the caller after re-reading, then reported as transient like every server fault (5xx, 429),
//! lost connection or timeout, which the agent backs off from and retries.

use std::time::Duration;

/// The kind of a failed Kubernetes API call, as far as retrying goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// 409: someone else changed the object in between (worth one retry after re-reading).
    Conflict,
    /// 400 or 422: the object is not valid; the same revision fails the same way again.
    Invalid,
    /// 403: the agent's service account may not do this (its ClusterRole needs fixing).
    Forbidden,
    /// 404: the object, or the kind itself, is not there.
    NotFound,
    /// Anything else: a server fault, throttling, a lost connection, a timeout.
    Transient,
}

/// How a `kube::Error` is retried.
pub fn classify(error: &kube::Error) -> Class {
    match error {
        kube::Error::Api(status) => match status.code {
            409 => Class::Conflict,
            400 | 422 => Class::Invalid,
            403 => Class::Forbidden,
            404 => Class::NotFound,
            _ => Class::Transient,
        },
        // The request could not even be built (a name Kubernetes refuses).
        kube::Error::BuildRequest(_) => Class::Invalid,
        _ => Class::Transient,
    }
}

/// Whether the API server answered 404.
pub(crate) fn is_not_found(error: &kube::Error) -> bool {
    classify(error) == Class::NotFound
}

/// A failure of the cluster side of an environment.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("failed to read the {kind} objects of namespace {namespace}")]
    Read {
        namespace: String,
        kind: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("failed to apply {kind} {name} of namespace {namespace}")]
    Apply {
        namespace: String,
        kind: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error(
        "failed to delete {kind} {name} of namespace {namespace}, which the revision no longer has"
    )]
    Prune {
        namespace: String,
        kind: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("failed to apply object {index} of namespace {namespace}: it has no {missing}")]
    Incomplete {
        namespace: String,
        index: usize,
        missing: &'static str,
    },
    #[error(
        "failed to apply the objects of namespace {namespace}: the namespace is being deleted"
    )]
    Terminating { namespace: String },
    #[error("failed to read Deployment {name} of namespace {namespace}")]
    ReadDeployment {
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("failed to list the {component} pods of namespace {namespace}")]
    ListPods {
        namespace: String,
        component: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("failed to set the deletion cost of pod {pod} of namespace {namespace}")]
    DeletionCost {
        namespace: String,
        pod: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("failed to delete namespace {namespace}")]
    Delete {
        namespace: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("failed to delete namespace {namespace}: it was still terminating after {waited:?} (its pods are finishing; deleting goes on)")]
    StillTerminating { namespace: String, waited: Duration },
}

impl ClusterError {
    /// The API server's error behind this failure, if there is one.
    pub fn kube_error(&self) -> Option<&kube::Error> {
        match self {
            ClusterError::Read { source, .. }
            | ClusterError::Apply { source, .. }
            | ClusterError::Prune { source, .. }
            | ClusterError::ReadDeployment { source, .. }
            | ClusterError::ListPods { source, .. }
            | ClusterError::DeletionCost { source, .. }
            | ClusterError::Delete { source, .. } => Some(source.as_ref()),
            ClusterError::Incomplete { .. }
            | ClusterError::Terminating { .. }
            | ClusterError::StillTerminating { .. } => None,
        }
    }

    /// Whether retrying the same objects cannot help: the API server refused one as invalid,
    /// or the renderer made one without a name or kind.
    pub fn is_permanent(&self) -> bool {
        match self {
            ClusterError::Incomplete { .. } => true,
            other => other
                .kube_error()
                .is_some_and(|e| classify(e) == Class::Invalid),
        }
    }

    /// The failure's category, as `hangar_reconcile_failures_total` counts it.
    pub fn category(&self) -> &'static str {
        if self.is_permanent() {
            return "kubernetes_invalid";
        }
        match self.kube_error().map(classify) {
            Some(Class::Forbidden) => "kubernetes_forbidden",
            _ => "kubernetes",
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use rstest::rstest;

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure("refused", "Reason")
                .with_code(code)
                .boxed(),
        )
    }

    fn apply_failure(code: u16) -> ClusterError {
        ClusterError::Apply {
            namespace: "hangar-0123456789ab".into(),
            kind: "Deployment".into(),
            name: "worker".into(),
            source: Box::new(api(code)),
        }
    }

    #[rstest]
    #[case::conflict(409, Class::Conflict)]
    #[case::unprocessable(422, Class::Invalid)]
    #[case::bad_request(400, Class::Invalid)]
    #[case::forbidden(403, Class::Forbidden)]
    #[case::not_found(404, Class::NotFound)]
    #[case::unavailable(503, Class::Transient)]
    #[case::server_error(500, Class::Transient)]
    #[case::throttled(429, Class::Transient)]
    fn api_errors_are_classified_by_their_code(#[case] code: u16, #[case] class: Class) {
        assert_eq!(classify(&api(code)), class);
    }

    #[rstest]
    #[case::invalid_is_permanent(422, true, "kubernetes_invalid")]
    #[case::bad_request_is_permanent(400, true, "kubernetes_invalid")]
    #[case::unavailable_is_transient(503, false, "kubernetes")]
    #[case::conflict_left_after_a_retry_is_transient(409, false, "kubernetes")]
    #[case::forbidden_is_transient(403, false, "kubernetes_forbidden")]
    fn apply_failures_are_permanent_only_when_invalid(
        #[case] code: u16,
        #[case] permanent: bool,
        #[case] category: &str,
    ) {
        let e = apply_failure(code);
        assert_eq!(e.is_permanent(), permanent);
        assert_eq!(e.category(), category);
    }

    #[test]
    fn a_lost_connection_is_transient() {
        let e = ClusterError::Read {
            namespace: "hangar-0123456789ab".into(),
            kind: "Deployment".into(),
            source: Box::new(kube::Error::Service("connection refused".into())),
        };
        assert!(!e.is_permanent());
        assert_eq!(e.category(), "kubernetes");
    }

    #[test]
    fn an_object_without_a_name_is_permanent() {
        let e = ClusterError::Incomplete {
            namespace: "hangar-0123456789ab".into(),
            index: 3,
            missing: "metadata.name",
        };
        assert!(e.is_permanent());
        assert_eq!(e.category(), "kubernetes_invalid");
    }
}
