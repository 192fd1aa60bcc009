//! `hangar_dag`: one file in an environment's DAG folder (its bucket's `dags/` prefix), from
//! inline `content` or a local `source` file. Its SHA-256 is in the state, so a file changed on
//! disk or in the bucket shows in the plan.

use async_trait::async_trait;
use hangar_tenants::dag_path::DagPath;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tf_provider::schema::{AttributeConstraint, AttributeType, Block, Description, Schema};
use tf_provider::value::{Value, ValueEmpty, ValueNumber, ValueString};
use tf_provider::{AttributePath, Diagnostics, Resource};

use crate::common::{api_error, attr, attributes, is_not_found, known, number, string};
use crate::Connection;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DagState<'a> {
    #[serde(borrow = "'a")]
    pub id: ValueString<'a>,
    pub tenant: ValueString<'a>,
    pub environment: ValueString<'a>,
    pub path: ValueString<'a>,
    pub content: ValueString<'a>,
    pub source: ValueString<'a>,
    pub sha256: ValueString<'a>,
    pub size: ValueNumber,
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl DagState<'_> {
    fn key(&self) -> (String, String, String) {
        (
            known(&self.tenant).unwrap_or_default().to_owned(),
            known(&self.environment).unwrap_or_default().to_owned(),
            known(&self.path).unwrap_or_default().to_owned(),
        )
    }

    /// The file's bytes as configured; `None` while they are not known yet (or on an error,
    /// then with a diagnostic on `source`).
    fn bytes(&self, diags: &mut Diagnostics) -> Option<Vec<u8>> {
        if let Some(c) = known(&self.content) {
            return Some(c.as_bytes().to_vec());
        }
        let source = known(&self.source)?;
        match std::fs::read(source) {
            Ok(b) => Some(b),
            Err(e) => {
                diags.error(
                    format!("Cannot read the DAG file {source}"),
                    e.to_string(),
                    AttributePath::new("source"),
                );
                None
            }
        }
    }
}

pub struct DagResource {
    connection: Connection,
}

impl DagResource {
    pub fn new(connection: Connection) -> Self {
        Self { connection }
    }

    pub fn resource_schema() -> Schema {
        let forces = |d: &str| attr(AttributeType::String, AttributeConstraint::Required, d);
        Schema {
            version: 1,
            block: Block {
                description: Description::markdown(
                    "A DAG file in an environment's DAG folder: written to the environment's \
                     bucket prefix `dags/`, synced into its Airflow in seconds. Set `content` or \
                     `source`. A replaced environment starts with an empty DAG folder: add \
                     `lifecycle { replace_triggered_by = [hangar_environment.X.environment_id] }` \
                     to write the file again then. Import with `terraform import \
                     hangar_dag.NAME tenant/environment/path`.",
                ),
                attributes: attributes([
                    (
                        "id",
                        attr(
                            AttributeType::String,
                            AttributeConstraint::Computed,
                            "`tenant/environment/path`, the import ID.",
                        ),
                    ),
                    ("tenant", forces("The environment's tenant.")),
                    ("environment", forces("The environment's name.")),
                    (
                        "path",
                        forces(
                            "The file's path in the DAG folder, e.g. `etl/daily.py`. Changing it \
                             replaces the file.",
                        ),
                    ),
                    (
                        "content",
                        attr(
                            AttributeType::String,
                            AttributeConstraint::Optional,
                            "The file's content (e.g. `file(\"dags/daily.py\")`).",
                        ),
                    ),
                    (
                        "source",
                        attr(
                            AttributeType::String,
                            AttributeConstraint::Optional,
                            "A local file to upload instead of `content`; a change of the file \
                             shows in the plan through `sha256`.",
                        ),
                    ),
                    (
                        "sha256",
                        attr(
                            AttributeType::String,
                            AttributeConstraint::Computed,
                            "SHA-256 of the file's bytes, hex.",
                        ),
                    ),
                    (
                        "size",
                        attr(
                            AttributeType::Number,
                            AttributeConstraint::Computed,
                            "The file's size in bytes.",
                        ),
                    ),
                ]),
                ..Default::default()
            },
        }
    }

    async fn write<'a>(
        &self,
        diags: &mut Diagnostics,
        planned: DagState<'a>,
    ) -> Option<DagState<'a>> {
        let client = self.connection.client(diags)?;
        let bytes = planned.bytes(diags)?;
        let (tenant, env, path) = planned.key();
        let size = bytes.len();
        let hash = sha256_hex(&bytes);
        if let Err(e) = client.put_dag(&tenant, &env, &path, bytes).await {
            api_error(
                diags,
                &format!("Writing DAG file {path} of {tenant}/{env}"),
                &e,
                &[],
            );
            return None;
        }
        let mut s = planned;
        s.id = string(format!("{tenant}/{env}/{path}"));
        s.sha256 = string(hash);
        s.size = number(i64::try_from(size).unwrap_or(i64::MAX));
        Some(s)
    }
}

#[async_trait]
impl Resource for DagResource {
    type State<'a> = DagState<'a>;
    type PrivateState<'a> = ValueEmpty;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        Some(Self::resource_schema())
    }

    async fn validate<'a>(&self, diags: &mut Diagnostics, config: Self::State<'a>) -> Option<()> {
        if let Some(p) = known(&config.path) {
            if let Err(e) = DagPath::parse(p) {
                diags.error(
                    format!("path {e}"),
                    "A DAG file's path is relative to the DAG folder, e.g. `etl/daily.py`.",
                    AttributePath::new("path"),
                );
            }
        }
        match (&config.content, &config.source) {
            (Value::Null, Value::Null) => diags.root_error(
                "Set `content` or `source`",
                "A DAG file needs its content inline (`content`) or from a local file (`source`).",
            ),
            (Value::Null, _) | (_, Value::Null) => {}
            _ => diags.error(
                "Set only one of `content` and `source`",
                "A DAG file's bytes come from one place.",
                AttributePath::new("source"),
            ),
        }
        Some(())
    }

    async fn read<'a>(
        &self,
        diags: &mut Diagnostics,
        state: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let client = self.connection.client(diags)?;
        let (tenant, env, path) = state.key();
        match client.get_dag(&tenant, &env, &path).await {
            Ok(bytes) => {
                let mut s = state;
                s.sha256 = string(sha256_hex(&bytes));
                s.size = number(i64::try_from(bytes.len()).unwrap_or(i64::MAX));
                Some((s, private))
            }
            Err(e) if is_not_found(&e) => None,
            Err(e) => {
                diags.root_error(
                    format!("Reading DAG file {path} of {tenant}/{env}"),
                    e.to_string(),
                );
                Some((state, private))
            }
        }
    }

    async fn plan_create<'a>(
        &self,
        diags: &mut Diagnostics,
        proposed: Self::State<'a>,
        _config: Self::State<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let mut s = proposed;
        s.id = match (known(&s.tenant), known(&s.environment), known(&s.path)) {
            (Some(t), Some(e), Some(p)) => string(format!("{t}/{e}/{p}")),
            _ => Value::Unknown,
        };
        match s.bytes(diags) {
            Some(b) => {
                s.sha256 = string(sha256_hex(&b));
                s.size = number(i64::try_from(b.len()).unwrap_or(i64::MAX));
            }
            None => {
                s.sha256 = Value::Unknown;
                s.size = Value::Unknown;
            }
        }
        Some((s, Value::Null))
    }

    async fn plan_update<'a>(
        &self,
        diags: &mut Diagnostics,
        prior: Self::State<'a>,
        proposed: Self::State<'a>,
        config: Self::State<'a>,
        private: Self::PrivateState<'a>,
        meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>, Vec<AttributePath>)> {
        let replace: Vec<AttributePath> = [
            ("tenant", prior.tenant != proposed.tenant),
            ("environment", prior.environment != proposed.environment),
            ("path", prior.path != proposed.path),
        ]
        .into_iter()
        .filter(|(_, changed)| *changed)
        .map(|(a, _)| AttributePath::new(a))
        .collect();
        let (s, private_) = self.plan_create(diags, proposed, config, meta).await?;
        let _ = private_;
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
        Some((self.write(diags, planned).await?, private))
    }

    async fn update<'a>(
        &self,
        diags: &mut Diagnostics,
        _prior: Self::State<'a>,
        planned: Self::State<'a>,
        _config: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        Some((self.write(diags, planned).await?, private))
    }

    async fn destroy<'a>(
        &self,
        diags: &mut Diagnostics,
        prior: Self::State<'a>,
        _private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<()> {
        let client = self.connection.client(diags)?;
        let (tenant, env, path) = prior.key();
        match client.delete_dag(&tenant, &env, &path).await {
            Ok(()) => Some(()),
            Err(e) if is_not_found(&e) => Some(()),
            Err(e) => {
                diags.root_error(
                    format!("Deleting DAG file {path} of {tenant}/{env}"),
                    e.to_string(),
                );
                None
            }
        }
    }

    async fn import<'a>(
        &self,
        diags: &mut Diagnostics,
        id: String,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let client = self.connection.client(diags)?;
        let parts: Vec<&str> = id.splitn(3, '/').collect();
        let [tenant, env, path] = parts[..] else {
            diags.root_error(
                format!("Invalid import ID {id:?}"),
                "Import a DAG file by `tenant/environment/path`.",
            );
            return None;
        };
        match client.get_dag(tenant, env, path).await {
            Ok(bytes) => Some((
                DagState {
                    id: string(id.clone()),
                    tenant: string(tenant),
                    environment: string(env),
                    path: string(path),
                    // The file's text, so that a configuration with the same `content`
                    // plans no change.
                    content: match String::from_utf8(bytes.clone()) {
                        Ok(t) => string(t),
                        Err(_) => Value::Null,
                    },
                    source: Value::Null,
                    sha256: string(sha256_hex(&bytes)),
                    size: number(i64::try_from(bytes.len()).unwrap_or(i64::MAX)),
                },
                Value::Null,
            )),
            Err(e) => {
                diags.root_error(format!("Importing DAG file {id}"), e.to_string());
                None
            }
        }
    }
}
