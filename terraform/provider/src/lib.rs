//! The Terraform provider `hangar/hangar`: tenants declare their Hangar environments, DAG
//! files, tokens and access keys as code. Every call goes through the shared typed client
//! (`hangar-client`), so the provider speaks the API exactly as the CLI does; the plugin
//! protocol (tfplugin6) is the `tf-provider` crate's.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use hangar_client::Client;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use tf_provider::schema::{Attribute, AttributeConstraint, AttributeType, Block, Schema};
use tf_provider::value::{ValueEmpty, ValueString};
use tf_provider::{AttributePath, Diagnostics, DynamicDataSource, DynamicResource, Provider};

pub mod common;
pub mod credential;
pub mod dag;
pub mod data_sources;
pub mod docs;
pub mod environment;
pub mod tenant;

use common::{attr, known};

/// The provider's name in its source address `hangar/hangar`.
pub const NAME: &str = "hangar";

/// The configured client, shared by the provider and its resources: Terraform configures the
/// provider after asking for the schemas, so the resources find the client here when they run.
#[derive(Clone, Default)]
pub struct Connection(Arc<RwLock<Option<Client>>>);

impl Connection {
    /// The client, or an error diagnostic when the provider was not configured.
    pub fn client(&self, diags: &mut Diagnostics) -> Option<Client> {
        let client = self.0.read().ok().and_then(|c| c.clone());
        if client.is_none() {
            diags.root_error(
                "The hangar provider is not configured",
                "Set the provider's `url` and `token` (or HANGAR_URL and HANGAR_TOKEN).",
            );
        }
        client
    }

    fn set(&self, client: Client) {
        if let Ok(mut c) = self.0.write() {
            *c = Some(client);
        }
    }
}

/// The `provider "hangar"` block.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ProviderConfig<'a> {
    #[serde(borrow = "'a")]
    pub url: ValueString<'a>,
    pub token: ValueString<'a>,
}

#[derive(Clone, Default)]
pub struct HangarProvider {
    connection: Connection,
}

impl HangarProvider {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every resource type, by its name in a configuration.
    pub fn resources(&self) -> Vec<(&'static str, Box<dyn DynamicResource>)> {
        let c = &self.connection;
        vec![
            (
                "hangar_environment",
                Box::new(environment::EnvironmentResource::new(c.clone())),
            ),
            ("hangar_dag", Box::new(dag::DagResource::new(c.clone()))),
            (
                "hangar_tenant",
                Box::new(tenant::TenantResource::new(c.clone())),
            ),
            (
                "hangar_token",
                Box::new(credential::TokenResource::new(c.clone())),
            ),
            (
                "hangar_access_key",
                Box::new(credential::AccessKeyResource::new(c.clone())),
            ),
        ]
    }

    /// Every data source type, by its name in a configuration.
    pub fn data_sources(&self) -> Vec<(&'static str, Box<dyn DynamicDataSource>)> {
        let c = &self.connection;
        vec![
            (
                "hangar_environment",
                Box::new(data_sources::EnvironmentDataSource::new(c.clone())),
            ),
            (
                "hangar_environments",
                Box::new(data_sources::EnvironmentsDataSource::new(c.clone())),
            ),
        ]
    }

    pub fn provider_schema() -> Schema {
        Schema {
            version: 1,
            block: Block {
                description: "Hangar: self-hosted managed Apache Airflow. The provider talks to \
                              Hangar's API with a bearer token."
                    .into(),
                attributes: [
                    (
                        "url",
                        attr(
                            AttributeType::String,
                            AttributeConstraint::Optional,
                            "Hangar's API URL, e.g. `https://hangar.example.com`. \
                             Default: the `HANGAR_URL` environment variable.",
                        ),
                    ),
                    (
                        "token",
                        Attribute {
                            sensitive: true,
                            ..attr(
                                AttributeType::String,
                                AttributeConstraint::Optional,
                                "A Hangar token: a tenant token (`hangar token create`) for \
                                 a tenant's environments, DAGs, tokens and access keys; the \
                                 platform admin token for `hangar_tenant`. Default: the \
                                 `HANGAR_TOKEN` environment variable.",
                            )
                        },
                    ),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
                ..Default::default()
            },
        }
    }
}

/// The provider's settings once its block and the environment are read.
fn settings(config: &ProviderConfig<'_>, diags: &mut Diagnostics) -> Option<(String, String)> {
    let from_env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if config.url.is_unknown() || config.token.is_unknown() {
        diags.root_error(
            "The hangar provider's settings are not known yet",
            "`url` and `token` must be known when Terraform plans: do not derive them from \
             resources that are created in the same run.",
        );
        return None;
    }
    let url = known(&config.url)
        .map(str::to_owned)
        .or_else(|| from_env("HANGAR_URL"));
    let token = known(&config.token)
        .map(str::to_owned)
        .or_else(|| from_env("HANGAR_TOKEN"));
    let Some(url) = url else {
        diags.error(
            "No Hangar URL",
            "Set the provider's `url`, or the HANGAR_URL environment variable.",
            AttributePath::new("url"),
        );
        return None;
    };
    let Some(token) = token else {
        diags.error(
            "No Hangar token",
            "Set the provider's `token`, or the HANGAR_TOKEN environment variable.",
            AttributePath::new("token"),
        );
        return None;
    };
    Some((url, token))
}

#[async_trait]
impl Provider for HangarProvider {
    type Config<'a> = ProviderConfig<'a>;
    type MetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        Some(Self::provider_schema())
    }

    async fn validate<'a>(&self, diags: &mut Diagnostics, config: Self::Config<'a>) -> Option<()> {
        if let Some(url) = known(&config.url) {
            if let Err(e) = Client::new(url, None) {
                diags.error(
                    "Invalid Hangar URL",
                    e.to_string(),
                    AttributePath::new("url"),
                );
            }
        }
        Some(())
    }

    async fn configure<'a>(
        &self,
        diags: &mut Diagnostics,
        _terraform_version: String,
        config: Self::Config<'a>,
    ) -> Option<()> {
        let (url, token) = settings(&config, diags)?;
        match Client::new(&url, Some(SecretString::from(token))) {
            Ok(client) => {
                self.connection.set(client);
                Some(())
            }
            Err(e) => {
                diags.error(
                    "Invalid Hangar URL",
                    e.to_string(),
                    AttributePath::new("url"),
                );
                None
            }
        }
    }

    fn get_resources(
        &self,
        _diags: &mut Diagnostics,
    ) -> Option<HashMap<String, Box<dyn DynamicResource>>> {
        Some(
            self.resources()
                .into_iter()
                // The plugin library names each type `hangar_<key>`.
                .map(|(k, v)| (k.trim_start_matches("hangar_").to_owned(), v))
                .collect(),
        )
    }

    fn get_data_sources(
        &self,
        _diags: &mut Diagnostics,
    ) -> Option<HashMap<String, Box<dyn DynamicDataSource>>> {
        Some(
            self.data_sources()
                .into_iter()
                // The plugin library names each type `hangar_<key>`.
                .map(|(k, v)| (k.trim_start_matches("hangar_").to_owned(), v))
                .collect(),
        )
    }
}
