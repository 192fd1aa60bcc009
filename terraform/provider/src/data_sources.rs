//! Data sources: `hangar_environment` (one environment, every attribute of the resource) and
//! `hangar_environments` (a tenant's environments).

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use hangar_tenants::api::Environment;
use tf_provider::schema::{AttributeConstraint, AttributeType, Block, Description, Schema};
use tf_provider::value::{ValueAny, ValueEmpty};
use tf_provider::{DataSource, Diagnostics};

use crate::common::{attr, attributes};
use crate::environment::{computed_attributes, spec_attributes, EnvironmentState};
use crate::Connection;

/// A data source's state: attribute name → value.
pub type DataState = BTreeMap<String, ValueAny>;

fn text(m: &DataState, k: &str) -> String {
    match m.get(k) {
        Some(ValueAny::String(s)) => s.clone(),
        _ => String::new(),
    }
}

/// An environment's attributes as the resource has them (without its `timeouts`).
fn environment_values(env: &Environment) -> DataState {
    let state = EnvironmentState::from_api(env, tf_provider::value::Value::Null);
    let mut m: DataState = serde_json::to_value(&state)
        .ok()
        .and_then(|j| serde_json::from_value(j).ok())
        .unwrap_or_default();
    m.remove("timeouts");
    m
}

pub struct EnvironmentDataSource {
    connection: Connection,
}

impl EnvironmentDataSource {
    pub fn new(connection: Connection) -> Self {
        Self { connection }
    }

    pub fn data_source_schema() -> Schema {
        let mut attrs = vec![
            (
                "id",
                attr(
                    AttributeType::String,
                    AttributeConstraint::Computed,
                    "`tenant/name`.",
                ),
            ),
            (
                "tenant",
                attr(
                    AttributeType::String,
                    AttributeConstraint::Required,
                    "The environment's tenant.",
                ),
            ),
            (
                "name",
                attr(
                    AttributeType::String,
                    AttributeConstraint::Required,
                    "The environment's name.",
                ),
            ),
        ];
        attrs.extend(spec_attributes(AttributeConstraint::Computed));
        attrs.extend(computed_attributes());
        Schema {
            version: 1,
            block: Block {
                description: Description::markdown(
                    "Reads an environment: its spec, phase, revision and URLs.",
                ),
                attributes: attributes(attrs),
                ..Default::default()
            },
        }
    }
}

#[async_trait]
impl DataSource for EnvironmentDataSource {
    type State<'a> = DataState;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        Some(Self::data_source_schema())
    }

    async fn read<'a>(
        &self,
        diags: &mut Diagnostics,
        config: Self::State<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<Self::State<'a>> {
        let client = self.connection.client(diags)?;
        let (tenant, name) = (text(&config, "tenant"), text(&config, "name"));
        match client.get_environment(&tenant, &name).await {
            Ok(env) => Some(environment_values(&env)),
            Err(e) => {
                diags.root_error(
                    format!("Reading environment {tenant}/{name}"),
                    e.to_string(),
                );
                None
            }
        }
    }
}

pub struct EnvironmentsDataSource {
    connection: Connection,
}

/// The attributes of each environment in `hangar_environments`.
const SUMMARY: [(&str, AttributeType); 6] = [
    ("name", AttributeType::String),
    ("environment_id", AttributeType::String),
    ("phase", AttributeType::String),
    ("revision", AttributeType::Number),
    ("airflow_version", AttributeType::String),
    ("webserver_url", AttributeType::String),
];

impl EnvironmentsDataSource {
    pub fn new(connection: Connection) -> Self {
        Self { connection }
    }

    pub fn data_source_schema() -> Schema {
        let object: HashMap<String, AttributeType> = SUMMARY
            .iter()
            .map(|(k, t)| ((*k).to_owned(), t.clone()))
            .collect();
        Schema {
            version: 1,
            block: Block {
                description: Description::markdown(
                    "Lists a tenant's environments (those not deleted), by name.",
                ),
                attributes: attributes([
                    (
                        "id",
                        attr(
                            AttributeType::String,
                            AttributeConstraint::Computed,
                            "The tenant's name.",
                        ),
                    ),
                    (
                        "tenant",
                        attr(
                            AttributeType::String,
                            AttributeConstraint::Required,
                            "The tenant.",
                        ),
                    ),
                    (
                        "names",
                        attr(
                            AttributeType::List(Box::new(AttributeType::String)),
                            AttributeConstraint::Computed,
                            "The environments' names, sorted.",
                        ),
                    ),
                    (
                        "environments",
                        attr(
                            AttributeType::List(Box::new(AttributeType::Object(object))),
                            AttributeConstraint::Computed,
                            "Each environment, sorted by name: `name`, `environment_id`, \
                             `phase`, `revision`, `airflow_version`, `webserver_url`.",
                        ),
                    ),
                ]),
                ..Default::default()
            },
        }
    }
}

#[async_trait]
impl DataSource for EnvironmentsDataSource {
    type State<'a> = DataState;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        Some(Self::data_source_schema())
    }

    async fn read<'a>(
        &self,
        diags: &mut Diagnostics,
        config: Self::State<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<Self::State<'a>> {
        let client = self.connection.client(diags)?;
        let tenant = text(&config, "tenant");
        let mut envs = match client.list_environments(&tenant).await {
            Ok(l) => l.environments,
            Err(e) => {
                diags.root_error(
                    format!("Listing the environments of {tenant}"),
                    e.to_string(),
                );
                return None;
            }
        };
        envs.retain(|e| e.phase != hangar_tenants::Phase::Deleted);
        envs.sort_by(|a, b| a.name.cmp(&b.name));
        let summaries = envs
            .iter()
            .map(|e| {
                let all = environment_values(e);
                ValueAny::Map(
                    SUMMARY
                        .iter()
                        .map(|(k, _)| {
                            (
                                (*k).to_owned(),
                                all.get(*k).cloned().unwrap_or(ValueAny::Null),
                            )
                        })
                        .collect(),
                )
            })
            .collect();
        let mut out = DataState::new();
        out.insert("id".into(), ValueAny::String(tenant.clone()));
        out.insert("tenant".into(), ValueAny::String(tenant));
        out.insert(
            "names".into(),
            ValueAny::List(
                envs.iter()
                    .map(|e| ValueAny::String(e.name.clone()))
                    .collect(),
            ),
        );
        out.insert("environments".into(), ValueAny::List(summaries));
        Some(out)
    }
}
