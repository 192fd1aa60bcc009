//! `hangar_environment`: one Airflow environment of a tenant. Create and update wait until it
//! is `AVAILABLE`; delete waits until it is gone; updates carry the revision Terraform read
//! (`If-Match`), so a change made meanwhile is a conflict, never overwritten.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use hangar_client::Client;
use hangar_tenants::api::{CreateEnvironment, Environment, UpdateEnvironment};
use hangar_tenants::{EnvironmentSpec, Phase, Platform, TenantName, DEFAULT_AIRFLOW_VERSION};
use serde::{Deserialize, Serialize};
use tf_provider::schema::{
    Attribute, AttributeConstraint, AttributeType, Block, Description, NestedBlock, Schema,
};
use tf_provider::value::{serde_as_vec, Value, ValueEmpty, ValueMap, ValueNumber, ValueString};
use tf_provider::{AttributePath, Diagnostics, Resource};

use crate::common::{
    api_error, attr, attributes, is_not_found, known, map_of, map_unknown, map_value, number,
    opt_string, string, string_map, timeouts_block, u32_of, Operation, Timeouts,
};
use crate::Connection;

/// The map attributes, whose API errors name an entry (`env_vars.FOO`).
pub const MAP_FIELDS: [&str; 3] = ["airflow_config_overrides", "env_vars", "tags"];

/// How often a wait asks for the environment's phase.
const POLL: Duration = Duration::from_secs(1);

/// What a configuration sets and the state records.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EnvironmentState<'a> {
    #[serde(borrow = "'a")]
    pub id: ValueString<'a>,
    pub tenant: ValueString<'a>,
    pub name: ValueString<'a>,
    pub airflow_version: ValueString<'a>,
    pub executor: ValueString<'a>,
    pub environment_class: ValueString<'a>,
    pub min_workers: ValueNumber,
    pub max_workers: ValueNumber,
    pub worker_weight: ValueNumber,
    pub hibernate_after_idle_minutes: ValueNumber,
    pub schedulers: ValueNumber,
    pub airflow_config_overrides: ValueMap<'a, ValueString<'a>>,
    pub env_vars: ValueMap<'a, ValueString<'a>>,
    pub requirements: ValueString<'a>,
    pub tags: ValueMap<'a, ValueString<'a>>,
    pub environment_id: ValueString<'a>,
    pub phase: ValueString<'a>,
    pub status_message: ValueString<'a>,
    pub revision: ValueNumber,
    pub cell: ValueString<'a>,
    pub webserver_url: ValueString<'a>,
    pub dags_bucket_url: ValueString<'a>,
    pub plugins_bucket_url: ValueString<'a>,
    pub requirements_bucket_url: ValueString<'a>,
    #[serde(with = "serde_as_vec")]
    pub timeouts: Value<Timeouts<'a>>,
}

/// The attributes an environment's spec has, with their descriptions; shared with the data
/// source, which has them all computed.
pub fn spec_attributes(constraint: AttributeConstraint) -> Vec<(&'static str, Attribute)> {
    let oc = |ty, d| attr(ty, constraint.clone(), d);
    let optional = if constraint == AttributeConstraint::Computed {
        AttributeConstraint::Computed
    } else {
        AttributeConstraint::Optional
    };
    vec![
        (
            "airflow_version",
            oc(
                AttributeType::String,
                "Apache Airflow version, one the platform offers (default: the platform's \
                 default, `3.3.2`).",
            ),
        ),
        (
            "executor",
            oc(
                AttributeType::String,
                "`celery` (default), `hangar` (the cell's shared pool of task slots; process cells), `kubernetes` or `celery_kubernetes` (Kubernetes cells).",
            ),
        ),
        (
            "environment_class",
            oc(
                AttributeType::String,
                "Worker size, as MWAA's classes: `micro`, `small` (default), `medium`, `large`, \
                 `xlarge`.",
            ),
        ),
        (
            "min_workers",
            oc(
                AttributeType::Number,
                "Workers kept running when nothing is queued (default 0: scales to zero).",
            ),
        ),
        (
            "max_workers",
            oc(
                AttributeType::Number,
                "Most workers the environment scales to (default 10).",
            ),
        ),
        (
            "worker_weight",
            oc(
                AttributeType::Number,
                "Share of the cell's worker pool when it is oversubscribed, relative to other \
                 environments' (1–100, default 1).",
            ),
        ),
        (
            "hibernate_after_idle_minutes",
            oc(
                AttributeType::Number,
                "Minutes with nothing queued, running or deferred, no use of its Airflow \
                 through Hangar and no scheduled DAG run due within them, after which the \
                 environment hibernates: its processes stop, its data is kept (0–10080, \
                 default 60; 0: never by itself). It wakes on use and ahead of its next \
                 scheduled DAG run.",
            ),
        ),
        (
            "schedulers",
            oc(AttributeType::Number, "Airflow schedulers (default 1)."),
        ),
        (
            "airflow_config_overrides",
            attr(
                crate::common::string_map(),
                optional.clone(),
                "Airflow configuration as `section.key` → value; keys the platform owns are \
                 refused.",
            ),
        ),
        (
            "env_vars",
            Attribute {
                sensitive: true,
                ..attr(
                    string_map(),
                    optional.clone(),
                    "Environment variables of every Airflow process (sensitive).",
                )
            },
        ),
        (
            "requirements",
            attr(
                AttributeType::String,
                optional.clone(),
                "A pip requirements file, installed into the environment's own Python \
                 runtime (e.g. `file(\"requirements.txt\")`).",
            ),
        ),
        ("tags", attr(string_map(), optional, "Tags, as MWAA's.")),
    ]
}

/// The attributes Hangar computes for an environment.
pub fn computed_attributes() -> Vec<(&'static str, Attribute)> {
    let c = |ty, d| attr(ty, AttributeConstraint::Computed, d);
    vec![
        (
            "environment_id",
            c(AttributeType::String, "The environment's UUID."),
        ),
        (
            "phase",
            c(
                AttributeType::String,
                "Lifecycle phase as MWAA names them: `CREATING`, `AVAILABLE`, `UPDATING`, \
                 `UPDATE_FAILED`, `UNAVAILABLE`, … (after an apply: `AVAILABLE`).",
            ),
        ),
        (
            "status_message",
            c(
                AttributeType::String,
                "Why the environment is in its phase, when that needs saying.",
            ),
        ),
        (
            "revision",
            c(
                AttributeType::Number,
                "The spec's revision: one more with every accepted change. Updates are sent \
                 with the revision Terraform read, so a change made meanwhile is refused.",
            ),
        ),
        (
            "cell",
            c(
                AttributeType::String,
                "The data-plane cell running the environment.",
            ),
        ),
        (
            "webserver_url",
            c(
                AttributeType::String,
                "The environment's Airflow UI and REST API through Hangar.",
            ),
        ),
        (
            "dags_bucket_url",
            c(
                AttributeType::String,
                "The bucket prefix whose files are synced into the DAG folder (e.g. \
                 `s3://…/dags/`).",
            ),
        ),
        (
            "plugins_bucket_url",
            c(AttributeType::String, "The bucket prefix of plugins."),
        ),
        (
            "requirements_bucket_url",
            c(
                AttributeType::String,
                "The bucket object of `requirements.txt`.",
            ),
        ),
    ]
}

impl<'a> EnvironmentState<'a> {
    /// The state of an environment as Hangar answers it.
    pub fn from_api(env: &Environment, timeouts: Value<Timeouts<'a>>) -> Self {
        let spec = &env.spec;
        Self {
            id: string(format!("{}/{}", env.tenant, env.name)),
            tenant: string(env.tenant.clone()),
            name: string(env.name.clone()),
            airflow_version: string(spec.airflow_version.as_str()),
            executor: string(json_name(&spec.executor)),
            environment_class: string(json_name(&spec.environment_class)),
            min_workers: number(spec.min_workers),
            max_workers: number(spec.max_workers),
            worker_weight: number(spec.worker_weight),
            hibernate_after_idle_minutes: number(spec.hibernate_after_idle_minutes),
            schedulers: number(spec.schedulers),
            airflow_config_overrides: map_value(&spec.airflow_config_overrides),
            env_vars: map_value(&spec.env_vars),
            requirements: if spec.requirements.is_empty() {
                Value::Null
            } else {
                string(spec.requirements.clone())
            },
            tags: map_value(&spec.tags),
            environment_id: string(env.id.to_string()),
            phase: string(env.phase.as_str()),
            status_message: opt_string(env.status_message.clone()),
            revision: number(env.revision),
            cell: opt_string(env.cell.clone()),
            webserver_url: opt_string(env.webserver_url.clone()),
            dags_bucket_url: opt_string(env.bucket.as_ref().map(|b| b.dags.clone())),
            plugins_bucket_url: opt_string(env.bucket.as_ref().map(|b| b.plugins.clone())),
            requirements_bucket_url: opt_string(
                env.bucket.as_ref().map(|b| b.requirements.clone()),
            ),
            timeouts,
        }
    }

    /// Keeps the empty maps and requirements `like` has where Hangar answered none: an empty
    /// value in the configuration and none at all mean the same to Hangar, and Terraform wants
    /// back what it planned.
    fn keeping_empty_of(mut self, like: &EnvironmentState<'_>) -> Self {
        if self.requirements.is_null() && known(&like.requirements) == Some("") {
            self.requirements = string("");
        }
        for (mine, theirs) in [
            (
                &mut self.airflow_config_overrides,
                &like.airflow_config_overrides,
            ),
            (&mut self.env_vars, &like.env_vars),
            (&mut self.tags, &like.tags),
        ] {
            if mine.is_null() && theirs.as_ref_option().is_some_and(|m| m.is_empty()) {
                *mine = Value::Value(Default::default());
            }
        }
        self
    }

    /// Whether any attribute of the spec is not known yet (it comes from another resource).
    fn spec_unknown(&self) -> bool {
        [
            &self.tenant,
            &self.name,
            &self.airflow_version,
            &self.executor,
            &self.environment_class,
            &self.requirements,
        ]
        .iter()
        .any(|v| v.is_unknown())
            || [
                &self.min_workers,
                &self.max_workers,
                &self.worker_weight,
                &self.hibernate_after_idle_minutes,
                &self.schedulers,
            ]
            .iter()
            .any(|v| v.is_unknown())
            || [&self.airflow_config_overrides, &self.env_vars, &self.tags]
                .iter()
                .any(|m| map_unknown(m))
    }

    /// The create request of a configuration, or errors on the attributes that cannot be sent.
    fn create_request(&self, diags: &mut Diagnostics) -> Option<CreateEnvironment> {
        let errors = diags.errors.len();
        let req = self.request(diags);
        (diags.errors.len() == errors).then_some(req)
    }

    /// The create request of a configuration, with errors on the attributes that cannot be
    /// sent (left out of it).
    fn request(&self, diags: &mut Diagnostics) -> CreateEnvironment {
        CreateEnvironment {
            name: known(&self.name).unwrap_or_default().to_owned(),
            airflow_version: known(&self.airflow_version).map(str::to_owned),
            executor: enum_of(&self.executor, "executor", diags),
            environment_class: enum_of(&self.environment_class, "environment_class", diags),
            min_workers: u32_of(&self.min_workers, "min_workers", diags),
            max_workers: u32_of(&self.max_workers, "max_workers", diags),
            worker_weight: u32_of(&self.worker_weight, "worker_weight", diags),
            hibernate_after_idle_minutes: u32_of(
                &self.hibernate_after_idle_minutes,
                "hibernate_after_idle_minutes",
                diags,
            ),
            schedulers: u32_of(&self.schedulers, "schedulers", diags),
            airflow_config_overrides: Some(map_of(&self.airflow_config_overrides)),
            env_vars: Some(map_of(&self.env_vars)),
            requirements: Some(known(&self.requirements).unwrap_or_default().to_owned()),
            tags: Some(map_of(&self.tags)),
        }
    }

    /// The update that turns `prior` into this state: every field the configuration sets, the
    /// maps and requirements whole (null clears them).
    fn update_request(&self, diags: &mut Diagnostics) -> Option<UpdateEnvironment> {
        let c = self.create_request(diags)?;
        Some(UpdateEnvironment {
            airflow_version: c.airflow_version,
            executor: c.executor,
            environment_class: c.environment_class,
            min_workers: c.min_workers,
            max_workers: c.max_workers,
            worker_weight: c.worker_weight,
            hibernate_after_idle_minutes: c.hibernate_after_idle_minutes,
            schedulers: c.schedulers,
            airflow_config_overrides: c.airflow_config_overrides,
            env_vars: c.env_vars,
            requirements: c.requirements,
            tags: c.tags,
        })
    }

    /// Whether the spec attributes of two states differ.
    fn spec_differs(&self, other: &Self) -> bool {
        self.airflow_version != other.airflow_version
            || self.executor != other.executor
            || self.environment_class != other.environment_class
            || self.min_workers != other.min_workers
            || self.max_workers != other.max_workers
            || self.worker_weight != other.worker_weight
            || self.hibernate_after_idle_minutes != other.hibernate_after_idle_minutes
            || self.schedulers != other.schedulers
            || self.airflow_config_overrides != other.airflow_config_overrides
            || self.env_vars != other.env_vars
            || self.requirements != other.requirements
            || self.tags != other.tags
    }

    fn tenant_and_name(&self) -> (String, String) {
        (
            known(&self.tenant).unwrap_or_default().to_owned(),
            known(&self.name).unwrap_or_default().to_owned(),
        )
    }
}

/// How an enum is spelled in the API's JSON (`celery_kubernetes`, `micro`).
fn json_name<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|j| j.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// An enum attribute's value, or an error naming the attribute and what it accepts.
fn enum_of<T: for<'de> Deserialize<'de>>(
    v: &ValueString<'_>,
    field: &'static str,
    diags: &mut Diagnostics,
) -> Option<T> {
    let s = known(v)?;
    match serde_json::from_value::<T>(serde_json::Value::String(s.to_owned())) {
        Ok(t) => Some(t),
        Err(_) => {
            let allowed = match field {
                "executor" => "`celery`, `hangar`, `kubernetes` or `celery_kubernetes`",
                _ => "`micro`, `small`, `medium`, `large` or `xlarge`",
            };
            diags.error(
                format!("{field}: unknown value {s:?}"),
                format!("{field} is one of {allowed}."),
                AttributePath::new(field),
            );
            None
        }
    }
}

/// Waits until the environment is `AVAILABLE` at `revision` or later. Gives the environment
/// as last read, with an error when it failed or the time ran out.
async fn wait_available(
    client: &Client,
    tenant: &str,
    name: &str,
    revision: i64,
    timeout: Duration,
    diags: &mut Diagnostics,
) -> Option<Environment> {
    let start = Instant::now();
    let mut last: Option<Environment> = None;
    loop {
        match client.get_environment(tenant, name).await {
            Ok(env) => {
                let applied = env
                    .observed
                    .as_ref()
                    .and_then(|o| o.revision)
                    .is_some_and(|r| r >= revision);
                match env.phase {
                    Phase::Available if applied && env.revision >= revision => return Some(env),
                    Phase::CreateFailed | Phase::UpdateFailed => {
                        let why = env
                            .observed
                            .as_ref()
                            .and_then(|o| o.failed.as_ref())
                            .map(|f| f.message.clone())
                            .or_else(|| env.status_message.clone())
                            .unwrap_or_else(|| "no reason given".to_owned());
                        diags.root_error(
                            format!("Environment {tenant}/{name} is {}", env.phase),
                            why,
                        );
                        return Some(env);
                    }
                    Phase::Deleting | Phase::Deleted => {
                        diags.root_error(
                            format!("Environment {tenant}/{name} is being deleted"),
                            "It was deleted while Terraform waited for it.",
                        );
                        return None;
                    }
                    _ => last = Some(env),
                }
            }
            Err(e) if is_not_found(&e) => {
                diags.root_error(
                    format!("Environment {tenant}/{name} is gone"),
                    "It was deleted while Terraform waited for it.",
                );
                return None;
            }
            // A passing failure to reach Hangar does not end the wait.
            Err(_) if start.elapsed() < timeout => {}
            Err(e) => {
                diags.root_error(
                    format!("Reading environment {tenant}/{name}"),
                    e.to_string(),
                );
                return last;
            }
        }
        if start.elapsed() >= timeout {
            let phase = last.as_ref().map(|e| e.phase.as_str()).unwrap_or("unknown");
            diags.root_error(
                format!("Environment {tenant}/{name} is not AVAILABLE after {timeout:?}"),
                format!(
                    "It is {phase}. Raise the resource's `timeouts`, or look at it with \
                     `hangar env get {name}` and its logs."
                ),
            );
            return last;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The state after Hangar accepted a create or an update: the environment once it is
/// `AVAILABLE` at the accepted revision (as last read, with an error, when it is not).
async fn settle<'a>(
    client: &Client,
    accepted: Environment,
    timeout: Duration,
    planned: &EnvironmentState<'a>,
    diags: &mut Diagnostics,
) -> EnvironmentState<'a> {
    let (tenant, name) = (accepted.tenant.clone(), accepted.name.clone());
    let env = wait_available(client, &tenant, &name, accepted.revision, timeout, diags)
        .await
        .unwrap_or(accepted);
    EnvironmentState::from_api(&env, planned.timeouts.clone()).keeping_empty_of(planned)
}

pub struct EnvironmentResource {
    connection: Connection,
}

impl EnvironmentResource {
    pub fn new(connection: Connection) -> Self {
        Self { connection }
    }

    pub fn resource_schema() -> Schema {
        let mut attrs = vec![
            (
                "id",
                attr(
                    AttributeType::String,
                    AttributeConstraint::Computed,
                    "`tenant/name`, the import ID.",
                ),
            ),
            (
                "tenant",
                attr(
                    AttributeType::String,
                    AttributeConstraint::Required,
                    "The tenant that owns the environment. Changing it replaces the environment.",
                ),
            ),
            (
                "name",
                attr(
                    AttributeType::String,
                    AttributeConstraint::Required,
                    "The environment's name, an RFC 1123 label unique in its tenant. Changing \
                     it replaces the environment.",
                ),
            ),
        ];
        attrs.extend(spec_attributes(AttributeConstraint::OptionalComputed));
        attrs.extend(computed_attributes());
        Schema {
            version: 1,
            block: Block {
                description: Description::markdown(
                    "An Apache Airflow environment of a tenant (as `aws_mwaa_environment`). \
                     Create and update wait until it is `AVAILABLE`; delete waits until it is \
                     gone. Import with `terraform import hangar_environment.NAME tenant/name` \
                     (an import does not know a `timeouts` block: the next apply records it, \
                     changing nothing in Hangar).",
                ),
                attributes: attributes(attrs),
                blocks: [(
                    "timeouts".to_owned(),
                    NestedBlock::Optional(timeouts_block()),
                )]
                .into_iter()
                .collect(),
                ..Default::default()
            },
        }
    }
}

/// Validates a configuration as Hangar would, before anything is created: the same rules,
/// from the same code (`hangar_tenants`), except which Airflow versions the platform offers,
/// which only the server knows.
pub fn validate_config(config: &EnvironmentState<'_>, diags: &mut Diagnostics) {
    Timeouts::validate(&config.timeouts, diags);
    if let Some(t) = known(&config.tenant) {
        if let Err(e) = TenantName::parse(t) {
            diags.error(
                format!("tenant: {e}"),
                "A tenant's name is an RFC 1123 label: lowercase letters, digits and `-`.",
                AttributePath::new("tenant"),
            );
        }
    }
    if config.spec_unknown() {
        return;
    }
    let req = config.request(diags);
    let mut versions = vec![DEFAULT_AIRFLOW_VERSION.to_owned()];
    versions.extend(req.airflow_version.clone());
    if let Err(errors) = EnvironmentSpec::create(
        req,
        &Platform {
            airflow_versions: versions,
        },
    ) {
        for e in errors.0 {
            diags.error(
                format!("{}: {}", e.field, e.message),
                "Hangar would refuse this environment.",
                crate::common::attribute_of(&e.field, &MAP_FIELDS),
            );
        }
    }
}

#[async_trait]
impl Resource for EnvironmentResource {
    type State<'a> = EnvironmentState<'a>;
    type PrivateState<'a> = ValueEmpty;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        Some(Self::resource_schema())
    }

    async fn validate<'a>(&self, diags: &mut Diagnostics, config: Self::State<'a>) -> Option<()> {
        validate_config(&config, diags);
        Some(())
    }

    async fn read<'a>(
        &self,
        diags: &mut Diagnostics,
        state: Self::State<'a>,
        private_state: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let client = self.connection.client(diags)?;
        let (tenant, name) = state.tenant_and_name();
        match client.get_environment(&tenant, &name).await {
            Ok(env) if matches!(env.phase, Phase::Deleting | Phase::Deleted) => None,
            Ok(env) => {
                let read = EnvironmentState::from_api(&env, state.timeouts.clone());
                Some((read.keeping_empty_of(&state), private_state))
            }
            Err(e) if is_not_found(&e) => None,
            Err(e) => {
                diags.root_error(
                    format!("Reading environment {tenant}/{name}"),
                    e.to_string(),
                );
                Some((state, private_state))
            }
        }
    }

    async fn plan_create<'a>(
        &self,
        _diags: &mut Diagnostics,
        proposed: Self::State<'a>,
        _config: Self::State<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let mut s = proposed;
        // What the configuration leaves out, Hangar decides (its defaults).
        for v in [
            &mut s.airflow_version,
            &mut s.executor,
            &mut s.environment_class,
        ] {
            if v.is_null() {
                *v = Value::Unknown;
            }
        }
        for v in [
            &mut s.min_workers,
            &mut s.max_workers,
            &mut s.worker_weight,
            &mut s.hibernate_after_idle_minutes,
            &mut s.schedulers,
        ] {
            if v.is_null() {
                *v = Value::Unknown;
            }
        }
        s.id = match (&s.tenant, &s.name) {
            (Value::Value(t), Value::Value(n)) => string(format!("{t}/{n}")),
            _ => Value::Unknown,
        };
        s.phase = string(Phase::Available.as_str());
        for v in [
            &mut s.environment_id,
            &mut s.status_message,
            &mut s.cell,
            &mut s.webserver_url,
            &mut s.dags_bucket_url,
            &mut s.plugins_bucket_url,
            &mut s.requirements_bucket_url,
        ] {
            *v = Value::Unknown;
        }
        s.revision = Value::Unknown;
        Some((s, Value::Null))
    }

    async fn plan_update<'a>(
        &self,
        _diags: &mut Diagnostics,
        prior: Self::State<'a>,
        proposed: Self::State<'a>,
        _config: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>, Vec<AttributePath>)> {
        let mut replace = Vec::new();
        if proposed.tenant != prior.tenant {
            replace.push(AttributePath::new("tenant"));
        }
        if proposed.name != prior.name {
            replace.push(AttributePath::new("name"));
        }
        let mut s = proposed;
        if !replace.is_empty() {
            return self
                .plan_create(_diags, s.clone(), s, _meta)
                .await
                .map(|(s, p)| (s, p, replace));
        }
        if s.spec_differs(&prior) {
            // The update is applied and waited for: the environment ends AVAILABLE at a new
            // revision, its message and URLs as Hangar then says.
            s.phase = string(Phase::Available.as_str());
            s.revision = Value::Unknown;
            s.status_message = Value::Unknown;
        }
        Some((s, private, replace))
    }

    async fn plan_destroy<'a>(
        &self,
        _diags: &mut Diagnostics,
        _prior: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<Self::PrivateState<'a>> {
        Some(private)
    }

    async fn create<'a>(
        &self,
        diags: &mut Diagnostics,
        planned: Self::State<'a>,
        _config: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let client = self.connection.client(diags)?;
        let timeout = Timeouts::of(&planned.timeouts, Operation::Create, diags)?;
        let req = planned.create_request(diags)?;
        let (tenant, name) = planned.tenant_and_name();
        let created = match client.create_environment(&tenant, &req, None).await {
            Ok(c) => c.environment,
            Err(e) => {
                api_error(
                    diags,
                    &format!("Creating environment {tenant}/{name}"),
                    &e,
                    &MAP_FIELDS,
                );
                return None;
            }
        };
        let state = settle(&client, created, timeout, &planned, diags).await;
        Some((state, private))
    }

    async fn update<'a>(
        &self,
        diags: &mut Diagnostics,
        prior: Self::State<'a>,
        planned: Self::State<'a>,
        _config: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let client = self.connection.client(diags)?;
        let (tenant, name) = planned.tenant_and_name();
        if !planned.spec_differs(&prior) {
            // Only `timeouts` changed: nothing to send.
            let mut s = prior;
            s.timeouts = planned.timeouts;
            return Some((s, private));
        }
        let timeout = Timeouts::of(&planned.timeouts, Operation::Update, diags)?;
        let req = planned.update_request(diags)?;
        let read_revision = prior.revision.as_ref_option().copied();
        let updated = match client
            .update_environment(&tenant, &name, &req, read_revision)
            .await
        {
            Ok(env) => env,
            Err(e) if e.status() == Some(412) => {
                diags.root_error(
                    format!("Environment {tenant}/{name} changed since Terraform read it"),
                    format!(
                        "Terraform read revision {}; someone else has changed it since. Nothing \
                         was overwritten: run `terraform plan` again to see the change, then \
                         apply.",
                        read_revision.unwrap_or_default()
                    ),
                );
                return None;
            }
            Err(e) => {
                api_error(
                    diags,
                    &format!("Updating environment {tenant}/{name}"),
                    &e,
                    &MAP_FIELDS,
                );
                return None;
            }
        };
        let state = settle(&client, updated, timeout, &planned, diags).await;
        Some((state, private))
    }

    async fn destroy<'a>(
        &self,
        diags: &mut Diagnostics,
        prior: Self::State<'a>,
        _private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<()> {
        let client = self.connection.client(diags)?;
        let timeout = Timeouts::of(&prior.timeouts, Operation::Delete, diags)?;
        let (tenant, name) = prior.tenant_and_name();
        match client.delete_environment(&tenant, &name).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => return Some(()),
            Err(e) => {
                diags.root_error(
                    format!("Deleting environment {tenant}/{name}"),
                    e.to_string(),
                );
                return None;
            }
        }
        let start = Instant::now();
        loop {
            match client.get_environment(&tenant, &name).await {
                Err(e) if is_not_found(&e) => return Some(()),
                Ok(env) if env.phase == Phase::Deleted => return Some(()),
                Ok(env) if start.elapsed() >= timeout => {
                    diags.root_error(
                        format!("Environment {tenant}/{name} is not gone after {timeout:?}"),
                        format!(
                            "It is {}. Raise the resource's `timeouts`, or look at it with \
                             `hangar env get {name}`.",
                            env.phase
                        ),
                    );
                    return None;
                }
                Err(e) if start.elapsed() >= timeout => {
                    diags.root_error(
                        format!("Deleting environment {tenant}/{name}"),
                        e.to_string(),
                    );
                    return None;
                }
                _ => tokio::time::sleep(POLL).await,
            }
        }
    }

    async fn import<'a>(
        &self,
        diags: &mut Diagnostics,
        id: String,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let client = self.connection.client(diags)?;
        let Some((tenant, name)) = id.split_once('/') else {
            diags.root_error(
                format!("Invalid import ID {id:?}"),
                "Import an environment by `tenant/name`.",
            );
            return None;
        };
        match client.get_environment(tenant, name).await {
            Ok(env) => Some((EnvironmentState::from_api(&env, Value::Null), Value::Null)),
            Err(e) => {
                diags.root_error(format!("Importing environment {id}"), e.to_string());
                None
            }
        }
    }
}
