//! The words both planes use on a cell's tunnel (docs/security.md, "The cell tunnel"): the
//! agent opens `GET /v1/cells/{cell}/tunnel` with its cell token and upgrades it to
//! [`PROTOCOL`]; over that connection the control plane is the HTTP/2 client and the agent the
//! server. Each request names its environment in [`ENVIRONMENT_HEADER`] and carries a path under
//! that environment's own Airflow path; the agent forwards it to that environment's api-server
//! only, and says why it did not in [`REFUSED_HEADER`].

/// The `Upgrade` token of a cell tunnel.
pub const PROTOCOL: &str = "hangar-tunnel/1";

/// The request header naming the environment (its id) a request over the tunnel is for.
pub const ENVIRONMENT_HEADER: &str = "hangar-environment";

/// The answer header with which the agent, not the environment's Airflow, refuses a request
/// over the tunnel; its value is a [`Refusal`].
pub const REFUSED_HEADER: &str = "hangar-tunnel-refused";

/// The authority of requests over a tunnel: no machine's, as the agent never uses it (it
/// forwards to the environment's own address); `.invalid` resolves nowhere (RFC 6761).
pub const AUTHORITY: &str = "cell-tunnel.invalid";

/// Why the agent did not forward a request over its tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The request named no environment, or one this agent does not run.
    UnknownEnvironment,
    /// The path is not under the environment's own Airflow path (or tries to leave it).
    OutsideEnvironment,
    /// The environment's api-server refused the connection (starting or stopped).
    ConnectionRefused,
    /// The environment's api-server was reached but the exchange failed.
    Unanswered,
}

impl Refusal {
    pub const ALL: [Refusal; 4] = [
        Refusal::UnknownEnvironment,
        Refusal::OutsideEnvironment,
        Refusal::ConnectionRefused,
        Refusal::Unanswered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::UnknownEnvironment => "unknown-environment",
            Refusal::OutsideEnvironment => "outside-environment",
            Refusal::ConnectionRefused => "connection-refused",
            Refusal::Unanswered => "unanswered",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The HTTP status the agent answers a refusal with.
    pub fn status(self) -> u16 {
        match self {
            Refusal::UnknownEnvironment => 404,
            Refusal::OutsideEnvironment => 403,
            Refusal::ConnectionRefused | Refusal::Unanswered => 502,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_round_trip_by_name() {
        for r in Refusal::ALL {
            assert_eq!(Refusal::parse(r.as_str()), Some(r));
        }
        assert_eq!(Refusal::parse("something-else"), None);
    }
}
