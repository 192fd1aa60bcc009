//! Prepared ("warm") environments: what a cell keeps running ahead of any request, and which
//! created environments may take one over. A warm environment belongs to no tenant until it is
//! claimed; it runs Airflow with the default configuration and has never run anyone's code.
//!
//! Claiming hands the running processes to the new environment, so only a spec whose processes
//! render exactly as the warm one's may claim it: the same Airflow version, executor, class,
//! schedulers, configuration overrides, environment variables and (empty) requirements. Worker
//! bounds, pool weight, the idle window and tags do not shape the running processes.

use uuid::Uuid;

use crate::api::CreateEnvironment;
use crate::spec::{EnvironmentSpec, Platform};

/// The reserved tenant warm environments belong to until they are claimed. It is not a valid
/// tenant name, so no request can name it.
pub const WARM_TENANT: &str = ".warm-pool";

/// The most environments one cell keeps prepared.
pub const MAX_WARM_POOL: u32 = 10;

/// The path a warm environment's Airflow is served under, claimed or not: it cannot depend on
/// a name that is not known while it is prepared. `crate::api::webserver_path` for the others.
pub fn warm_airflow_path(id: Uuid) -> String {
    format!("/v1/environments/{}/airflow/", id.simple())
}

/// The name a warm environment has until it is claimed: `warm-` and the start of its id.
pub fn warm_name(id: Uuid) -> String {
    format!("warm-{}", &id.simple().to_string()[..12])
}

/// The spec a warm environment is prepared with: the platform's defaults, no workers, never
/// hibernating.
pub fn warm_spec(id: Uuid, platform: &Platform) -> Option<EnvironmentSpec> {
    let req = CreateEnvironment {
        name: warm_name(id),
        min_workers: Some(0),
        hibernate_after_idle_minutes: Some(0),
        ..CreateEnvironment::default()
    };
    EnvironmentSpec::create(req, platform).ok()
}

/// Whether an environment created with `wanted` may take over the warm environment prepared
/// with `warm` (see the module header).
pub fn can_claim(warm: &EnvironmentSpec, wanted: &EnvironmentSpec) -> bool {
    warm.airflow_version == wanted.airflow_version
        && warm.executor == wanted.executor
        && warm.environment_class == wanted.environment_class
        && warm.schedulers == wanted.schedulers
        && warm.airflow_config_overrides == wanted.airflow_config_overrides
        && warm.env_vars == wanted.env_vars
        && warm.requirements.trim().is_empty()
        && wanted.requirements.trim().is_empty()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use rstest::rstest;

    fn spec(edit: impl FnOnce(&mut CreateEnvironment)) -> EnvironmentSpec {
        let mut req = CreateEnvironment {
            name: "etl".to_owned(),
            ..CreateEnvironment::default()
        };
        edit(&mut req);
        EnvironmentSpec::create(req, &Platform::default()).unwrap()
    }

    fn warm() -> EnvironmentSpec {
        warm_spec(Uuid::new_v4(), &Platform::default()).unwrap()
    }

    #[test]
    fn a_warm_environment_has_the_defaults_no_workers_and_never_hibernates() {
        let w = warm();
        assert!(w.name.as_str().starts_with("warm-"));
        assert_eq!(w.min_workers, 0);
        assert_eq!(w.hibernate_after_idle_minutes, 0);
        assert!(w.requirements.is_empty());
    }

    #[rstest]
    #[case::defaults(|_: &mut CreateEnvironment| {}, true)]
    #[case::worker_bounds(|r: &mut CreateEnvironment| { r.min_workers = Some(2); r.max_workers = Some(5); }, true)]
    #[case::idle_window(|r: &mut CreateEnvironment| r.hibernate_after_idle_minutes = Some(15), true)]
    #[case::tags(|r: &mut CreateEnvironment| r.tags = Some([("team".to_owned(), "data".to_owned())].into()), true)]
    #[case::requirements(|r: &mut CreateEnvironment| r.requirements = Some("pendulum\n".to_owned()), false)]
    #[case::config(|r: &mut CreateEnvironment| r.airflow_config_overrides = Some([("core.parallelism".to_owned(), "4".to_owned())].into()), false)]
    #[case::env_vars(|r: &mut CreateEnvironment| r.env_vars = Some([("TEAM".to_owned(), "data".to_owned())].into()), false)]
    #[case::schedulers(|r: &mut CreateEnvironment| r.schedulers = Some(2), false)]
    #[case::class(|r: &mut CreateEnvironment| r.environment_class = Some(crate::EnvironmentClass::Large), false)]
    fn only_a_spec_whose_processes_render_alike_claims_a_warm_environment(
        #[case] edit: fn(&mut CreateEnvironment),
        #[case] claims: bool,
    ) {
        assert_eq!(can_claim(&warm(), &spec(edit)), claims);
    }

    #[test]
    fn the_warm_tenant_is_no_valid_tenant_name() {
        assert!(crate::TenantName::parse(WARM_TENANT.to_owned()).is_err());
    }

    #[test]
    fn a_warm_path_names_the_environment_by_id_only() {
        let id = Uuid::new_v4();
        assert_eq!(
            warm_airflow_path(id),
            format!("/v1/environments/{}/airflow/", id.simple())
        );
    }
}
